#!/usr/bin/env bash
# gpu_all.sh - everything that needs GPUs, in one go, on the GPU machine:
# build with CUDA, run the C tests on the cuda backend at 1, 2, 3, 4 and 8 ranks
# (as many as there are GPUs), the Python tests, the demo on all GPUs, and the
# benchmark when bench/ has one. Every run has its own timeout, so a hang costs one step.
# Logs go to $OUT (the device tool's output folder) when it is set, else to
# build/gpu_logs: summary.txt (one line per step), gpu_all.log (every step's
# output) and bench/ (what bench/run_bench.sh writes). Exit status: non-zero
# when any step failed.
#
#   scripts/gpu_all.sh                 build + tests + demo + bench
#   SKIP_BUILD=1 scripts/gpu_all.sh    use an existing build/ (made elsewhere)
#   TEST_TIMEOUT=300 BENCH_TIMEOUT=600 scripts/gpu_all.sh   (defaults 180, 480 s)
#   SKIP_PYTEST=1 SKIP_BENCH=1 scripts/gpu_all.sh            leave those steps out
#   PYTEST_K=4 scripts/gpu_all.sh      the GPU pytest's cases matching -k 4 (its
#                                      4-GPU ones: ids [4], [4-fp8], ...)
#   SKIP_TESTS=1 SKIP_DEMO=1 SKIP_SANITIZER=1  likewise (per-rank C tests, demo,
#                                      compute-sanitizer); the benchmark has the fused
#                                      operator's columns (bench/run_bench.sh)
#   SKIP_EXTRA=1                       leave out every longer run: the 1000-call
#                                      sequences (default and DFM_CUDA_FP8_PROMOTE=128),
#                                      the sanitizers, the whole test_moe with
#                                      DFM_CUDA_FUSED=0 and with DFM_CUDA_GRAPH=0, gemm_bench -v 3pe (FP8 promote
#                                      128, 32, 1)
#   SKIP_PROMOTE=1 / SKIP_FUSED=1      leave out the promotion group (both 1000-call
#                                      runs, gemm_bench -v 3pe) / the pipeline group (test_moe
#                                      with DFM_CUDA_FUSED=0: the pipeline of launches; the
#                                      C tests above run the library's default, the fused kernel)
#   SKIP_TOK16=1                       leave out test_moe and a 1000-call sequence with
#                                      FP8 GEMM1's version 5 forced (DFM_CUDA_TOK16_ROWS=0)
# Only the new steps, in two device calls (each group's timeouts add up to more than
# 10 minutes only if steps hang):
#   quick="SKIP_BUILD=1 SKIP_TESTS=1 SKIP_PYTEST=1 SKIP_DEMO=1 SKIP_BENCH=1 SKIP_SANITIZER=1"
#   env $quick SKIP_FUSED=1 scripts/gpu_all.sh     # FP8 promotion: 1 GPU is enough
#   env $quick SKIP_PROMOTE=1 scripts/gpu_all.sh   # the pipeline group: 2 GPUs
# Fit the whole run in the device tool's 10-minute call with the timeouts.
# The device tool returns at most 8 files: when $LOG holds more at the end,
# each folder in it (bench/) is packed into <folder>.tar.gz, with
# its bench.md copied beside it as <folder>.md.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# No NVLink multicast; torch's NCCL first on LD_LIBRARY_PATH (sets PYTHON).
. scripts/gpu_env.sh

LOG=${OUT:-build/gpu_logs}
mkdir -p "$LOG"
BUILD=${BUILD:-build}
TEST_TIMEOUT=${TEST_TIMEOUT:-180}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-120}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-480}
PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-450}
SUMMARY="$LOG/summary.txt"
FULL="$LOG/gpu_all.log"
: >"$SUMMARY"
: >"$FULL"
status=0

# step NAME TIMEOUT CMD...: run with a timeout, append its output to $FULL,
# show its tail, record the result in $SUMMARY.
step() {
    local name=$1 limit=$2 t0 rc tmp
    shift 2
    t0=$(date +%s)
    tmp=$(mktemp)
    echo "== $name: $*" | tee -a "$SUMMARY" "$FULL"
    timeout --kill-after=10 "$limit" "$@" >"$tmp" 2>&1
    rc=$?
    cat "$tmp" >>"$FULL"
    tail -n 15 "$tmp"
    rm -f "$tmp"
    if [ $rc -eq 0 ]; then
        echo "== $name: ok ($(($(date +%s) - t0)) s)" | tee -a "$SUMMARY"
    else
        [ $rc -eq 124 ] && echo "== $name: TIMEOUT after $limit s" | tee -a "$SUMMARY"
        echo "== $name: FAILED rc=$rc ($(($(date +%s) - t0)) s)" | tee -a "$SUMMARY"
        status=1
    fi
    return $rc
}

num_gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
echo "gpu_all: $num_gpus GPU(s); LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" | tee -a "$SUMMARY"
nvidia-smi -L 2>/dev/null | tee -a "$SUMMARY"
if [ "$num_gpus" -lt 1 ]; then
    echo "gpu_all: no GPU found" | tee -a "$SUMMARY"
    exit 1
fi

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi
if [ "${SKIP_BUILD:-0}" != 1 ] && ! command -v nvcc >/dev/null; then
    echo "gpu_all: no nvcc here; using the existing $BUILD (built elsewhere with CUDA=1)" \
        | tee -a "$SUMMARY"
    SKIP_BUILD=1
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    step build 900 make -j"$(nproc)" BUILD="$BUILD" CUDA=1 all || exit 1
fi
# a carried build needs libdfm.so too (pytest, the ldd check), not only the test binaries
[ -f "$BUILD/libdfm.so" ] || {
    echo "gpu_all: $BUILD/libdfm.so missing (carry it with the binaries)" | tee -a "$SUMMARY" >&2
    exit 1
}
ldd "$BUILD/libdfm.so" | grep -E 'nccl|cudart' | tee -a "$SUMMARY"

ranks_list=()
for r in 1 2 3 4 8; do [ "$r" -le "$num_gpus" ] && ranks_list+=("$r"); done

# C tests on the cuda backend. A test takes -b cuda when its source says so
# (tests/test_moe.c does; the others are host-only and ran in CI). One whose
# cases are named ...R=<ranks>,... also takes -o and runs once per rank count,
# each under its own timeout, as the GPUs allow; one with -p threads|procs
# runs its thread-rank and process-rank cases in separate runs (a process
# that has used CUDA cannot fork ranks that use it).
shopt -s nullglob
[ "${SKIP_TESTS:-0}" = 1 ] && echo "== C tests: SKIP_TESTS=1; skipped" | tee -a "$SUMMARY"
for t in "$BUILD"/tests/test_*; do
    [ "${SKIP_TESTS:-0}" = 1 ] && break
    [ -x "$t" ] && [ -f "$t" ] || continue
    name=$(basename "$t")
    src="tests/$name.c"
    grep -q '"-b"' "$src" 2>/dev/null || continue
    kinds=(all)
    grep -q '"-p"' "$src" && kinds=(threads procs)
    for kind in "${kinds[@]}"; do
        pargs=()
        [ "$kind" != all ] && pargs=(-p "$kind")
        if grep -q '"-o"' "$src" && grep -q 'R=%d' "$src"; then
            for r in "${ranks_list[@]}"; do
                step "$name-$kind-R$r" "$TEST_TIMEOUT" "$t" -b cuda "${pargs[@]}" -o "R=$r,"
            done
        else
            step "$name-$kind" "$TEST_TIMEOUT" "$t" -b cuda "${pargs[@]}"
        fi
    done
done

# Longer runs and the sanitizers on small cases (SKIP_EXTRA=1 leaves them out):
# 1000 consecutive calls with varying T, with the default FP8 arithmetic (codes
# widened to f16, fp32 accumulation) and with DFM_CUDA_FP8_PROMOTE=128 (QGMMA,
# promoted every 128 values of K: SPEC 3.3's per-call tolerance failed in ~1% of
# FP8 calls with T <= 8; DFM_DEBUG=1 makes the log name the kernel); compute-sanitizer
# memcheck and racecheck on one GPU (NCCL probes kernels of other
# architectures, hence --report-api-errors no); the whole test_moe on thread
# ranks once more with the pipeline of launches (DFM_CUDA_FUSED=0; the library's
# default since the thirty-first session is the one-kernel fused operator, which
# the per-rank runs above take); the GEMM-only check of promote 32 beside 128
# (gemm_bench -v 3pe: FP8 promote 128, 32 and 1 side by side: act errors, code flips, time).
# The two 1000-call runs share one seed (SEQ_SEED, else a fresh one), so they
# see the same data and their failure counts compare call for call.
if [ "${SKIP_EXTRA:-0}" != 1 ] && [ -x "$BUILD/tests/test_moe" ]; then
    if [ "${SKIP_PROMOTE:-0}" != 1 ]; then
        seq_seed=${SEQ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
        step test_moe-1000-calls "$TEST_TIMEOUT" env DFM_CUDA_FUSED=0 "$BUILD/tests/test_moe" -b cuda \
            -p threads -o sequence -c 1000 -s "$seq_seed"
        step test_moe-1000-calls-fused "$TEST_TIMEOUT" "$BUILD/tests/test_moe" -b cuda -p threads \
            -o sequence -c 1000 -s "$seq_seed"
        # a diagnostic, not a test: the old QGMMA GEMM1 is expected to fail a few
        # calls (the count is what it reports), so its step does not fail
        step test_moe-1000-calls-promote128-diagnostic "$TEST_TIMEOUT" bash -c \
            '"$@" || echo "(diagnostic: calls over tolerance with promote 128 are expected)"' _ \
            env DFM_CUDA_FUSED=0 DFM_CUDA_FP8_PROMOTE=128 DFM_DEBUG=1 \
            "$BUILD/tests/test_moe" -b cuda -p threads -o sequence -c 1000 -s "$seq_seed"
        if [ -x "$BUILD/bench/gemm_bench" ]; then
            step gemm_bench-promote "$BENCH_TIMEOUT" "$BUILD/bench/gemm_bench" -v 3pe -m 1 -i 10
        fi
    fi
    if [ "${SKIP_FUSED:-0}" != 1 ]; then
        step test_moe-threads-pipeline "$TEST_TIMEOUT" env DFM_CUDA_FUSED=0 \
            "$BUILD/tests/test_moe" -b cuda -p threads
        # dfm_fused_moe's launches without the cached graph (plain launches, as
        # inside a caller's capture; the steps above run through the graph)
        step test_moe-threads-nograph "$TEST_TIMEOUT" env DFM_CUDA_FUSED=0 DFM_CUDA_GRAPH=0 \
            "$BUILD/tests/test_moe" -b cuda -p threads
    fi
    if [ "${SKIP_TOK16:-0}" != 1 ]; then
        # FP8 GEMM1's version 5 (tokens widened to f16 once, TMA-fed) runs by
        # default from 96 expected rows per expert, which no test case reaches:
        # DFM_CUDA_TOK16_ROWS=0 makes every FP8 call take it (DFM_DEBUG=1 names it)
        step test_moe-threads-tok16 "$TEST_TIMEOUT" env DFM_CUDA_FUSED=0 DFM_CUDA_TOK16_ROWS=0 DFM_DEBUG=1 \
            "$BUILD/tests/test_moe" -b cuda -p threads
        step test_moe-1000-calls-tok16 "$TEST_TIMEOUT" env DFM_CUDA_FUSED=0 DFM_CUDA_TOK16_ROWS=0 \
            "$BUILD/tests/test_moe" -b cuda -p threads -o sequence -c 1000
        # the fused kernel's version 5 (its CTAs widen the rows themselves)
        step test_moe-threads-fused-tok16 "$TEST_TIMEOUT" env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 \
            "$BUILD/tests/test_moe" -b cuda -p threads
    fi
    if [ "${SKIP_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer >/dev/null; then
        for tool in memcheck racecheck; do
            step "sanitizer-$tool" "$TEST_TIMEOUT" env DFM_CUDA_FUSED=0 DFM_TEST_TIMEOUT_S=120 \
                compute-sanitizer --tool "$tool" \
                --report-api-errors no --error-exitcode 9 "$BUILD/tests/test_moe" -b cuda \
                -p threads -o "pair(q=fp8,R=1,"
        done
        # the library's default, the fused kernel
        step sanitizer-memcheck-fused "$TEST_TIMEOUT" env DFM_TEST_TIMEOUT_S=120 compute-sanitizer \
            --tool memcheck --report-api-errors no --error-exitcode 9 "$BUILD/tests/test_moe" -b cuda \
            -p threads -o "fused(q=fp8,R=1,"
        [ "${SKIP_TOK16:-0}" != 1 ] &&
            step sanitizer-memcheck-tok16 "$TEST_TIMEOUT" env DFM_CUDA_FUSED=0 DFM_TEST_TIMEOUT_S=120 DFM_CUDA_TOK16_ROWS=0 \
                compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
                "$BUILD/tests/test_moe" -b cuda -p threads -o "pair(q=fp8,R=1,"
        [ "${SKIP_TOK16:-0}" != 1 ] &&
            step sanitizer-memcheck-fused-tok16 "$TEST_TIMEOUT" env DFM_TEST_TIMEOUT_S=120 DFM_CUDA_FUSED=1 \
                DFM_CUDA_TOK16_ROWS=0 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
                "$BUILD/tests/test_moe" -b cuda -p threads -o "fused(q=fp8,R=1,"
    fi
fi

# The Python package's GPU tests (tests/python/test_cuda.py, ~5 min on 4 x H100;
# the CPU ones run in CI: the whole folder here took more than 7 min), with the
# python that has torch and CUDA.
if [ "${SKIP_PYTEST:-0}" = 1 ]; then
    echo "== pytest: SKIP_PYTEST=1; skipped" | tee -a "$SUMMARY"
elif [ -d tests/python ] && "$PYTHON" -c 'import torch,sys;sys.exit(not torch.cuda.is_available())' \
    2>/dev/null; then
    step pytest "$PYTEST_TIMEOUT" env DFM_LIBRARY="$PWD/$BUILD/libdfm.so" \
        "$PYTHON" -m pytest -v -rs --durations=10 ${PYTEST_K:+-k "$PYTEST_K"} tests/python/test_cuda.py
else
    echo "== pytest: no tests/python or no torch with CUDA in $PYTHON; skipped" | tee -a "$SUMMARY"
fi

# The README's torch.distributed example on all GPUs, as the README runs it
# (torchrun; checks its own result against torch math).
if [ "${SKIP_PYTEST:-0}" != 1 ] && "$PYTHON" -c 'import torch,sys;sys.exit(not torch.cuda.is_available())' \
    2>/dev/null; then
    step example-torch "$DEMO_TIMEOUT" env DFM_LIBRARY="$PWD/$BUILD/libdfm.so" PYTHONPATH="$PWD/python" \
        "$PYTHON" -m torch.distributed.run --nproc_per_node="$num_gpus" examples/torch_moe.py
fi

# The main job on all GPUs (up to 8), each mode.
[ "${SKIP_DEMO:-0}" = 1 ] && echo "== demo: SKIP_DEMO=1; skipped" | tee -a "$SUMMARY"
for m in fp8 int8 bf16; do
    [ "${SKIP_DEMO:-0}" = 1 ] && break
    step "demo-$m" "$DEMO_TIMEOUT" "$BUILD/dfm_demo" -b cuda -m "$m" -n 20
done

# The benchmark: bench/run_bench.sh when there is one (the whole table, torch
# baseline included, output in $LOG/bench), else each bench/*.cu driver built
# by make as $BUILD/bench/<name>.
if [ "${SKIP_BENCH:-0}" = 1 ]; then
    echo "== bench: SKIP_BENCH=1; skipped" | tee -a "$SUMMARY"
elif [ -x bench/run_bench.sh ]; then
    step bench "$BENCH_TIMEOUT" env OUT="$LOG/bench" BUILD="$BUILD" PYTHON="$PYTHON" \
        bench/run_bench.sh
else
    benches=()
    for b in bench/*.cu; do
        [ -x "$BUILD/bench/$(basename "$b" .cu)" ] && benches+=("$BUILD/bench/$(basename "$b" .cu)")
    done
    [ "${#benches[@]}" -gt 0 ] ||
        echo "== bench: no benchmark in bench/ (or not built); skipped" | tee -a "$SUMMARY"
    for b in "${benches[@]}"; do
        step "$(basename "$b")" "$BENCH_TIMEOUT" "$b" -o "$LOG/$(basename "$b").csv"
    done
fi

# The GEMM-only benchmark (one GPU): time, TB/s, time / floor beside DeepGEMM.
if [ "${SKIP_BENCH:-0}" != 1 ] && [ -x "$BUILD/bench/gemm_bench" ]; then
    step gemm_bench "$BENCH_TIMEOUT" "$BUILD/bench/gemm_bench" -o "$LOG/gemm_bench.csv"
fi

# At most 8 files come back from the device tool: pack the folders if needed.
nfiles=$(find "$LOG" -type f | wc -l)
if [ "$nfiles" -gt 8 ]; then
    for d in "$LOG"/*/; do
        d=${d%/}
        b=$(basename "$d")
        [ -f "$d/bench.md" ] && cp "$d/bench.md" "$LOG/$b.md"
        tar czf "$LOG/$b.tar.gz" -C "$LOG" "$b" && rm -rf "$d"
    done
    echo "gpu_all: $nfiles files in $LOG; folders packed into <folder>.tar.gz" | tee -a "$SUMMARY"
fi

echo "gpu_all: $([ $status -eq 0 ] && echo all passed || echo SOME STEPS FAILED); logs in $LOG" \
    | tee -a "$SUMMARY"
exit $status
