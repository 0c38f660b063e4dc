#!/usr/bin/env bash
# run_bench.sh - the whole benchmark table in one command, on the GPU machine:
# build bench/dfm_bench.cu if its binary is missing, run it on all GPUs
# (configs of PERF.md whose E divides by the GPU count), run the torch
# baseline on the same GPUs and the very same routing, merge both into one
# table (CSV + markdown) and draw the plot. Every step has its own timeout.
#
#   bench/run_bench.sh                         everything, output in $OUT (or build/bench_out)
#   BENCH_TS=32 bench/run_bench.sh             only T = 32 (plus the routing cases)
#   BENCH_CONFIG=dsv3-e32 BENCH_ITERS=100 bench/run_bench.sh
#
# With 4 or more GPUs each config runs PERF.md's T list; with fewer (the
# "2 ranks, G doubles" variants) T in {1, 32, 128}; with 8, E doubles instead
# (dfm_bench -G: G as in PERF.md) and dsv3-e256-ep8 adds E = 256 on 8 ranks
# (G = 32). The skewed and -1-at-10%
# routings run at T = 32. dfm_bench runs three times: the unfused pipeline of
# launches, the one-kernel fused operator (DFM_CUDA_FUSED=1), and the fused
# operator with communication disabled (-L; BENCH_FUSED=0 skips both fused
# passes). Output: dfm.csv, fused.csv, fused_local.csv, torch.csv, bench.csv (merged),
# bench.md (card, date, command, table), bench.png, run.log.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# No NVLink multicast; torch's NCCL (>= 2.28.7) first on LD_LIBRARY_PATH (sets PYTHON).
. scripts/gpu_env.sh
export PYTHONUNBUFFERED=1

OUTDIR=${OUT:-build/bench_out}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/run.log"
: >"$LOG"
BUILD=${BUILD:-build}
BIN="$BUILD/bench/dfm_bench"
WARMUP=${BENCH_WARMUP:-5}
ITERS=${BENCH_ITERS:-50}
ROUTING=$(mktemp -d /tmp/dfm_routing.XXXXXX)
status=0

num_gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
R=${BENCH_RANKS:-$num_gpus}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
{
    echo "# run_bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $num_gpus x $card, ranks $R"
    nvidia-smi -L
    nvidia-smi topo -m 2>/dev/null | head -n $((num_gpus + 1))
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} 2>&1 | tee -a "$LOG"
[ "$R" -ge 1 ] || { echo "run_bench: no GPU" | tee -a "$LOG"; exit 1; }

if [ ! -x "$BIN" ] || [ "${REBUILD:-0}" = 1 ]; then
    command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
    echo "== build $BIN" | tee -a "$LOG"
    timeout 900 make -j"$(nproc)" BUILD="$BUILD" CUDA=1 "$BUILD/libdfm.a" >>"$LOG" 2>&1 &&
        mkdir -p "$BUILD/bench" &&
        timeout 300 nvcc -std=c++17 -O2 -Iinclude -Isrc -gencode=arch=compute_90a,code=sm_90a \
            bench/dfm_bench.cu "$BUILD/libdfm.a" -lnccl -o "$BIN" >>"$LOG" 2>&1 ||
        { echo "run_bench: build failed (see run.log)" | tee -a "$LOG"; exit 1; }
fi

targs=()
if [ -n "${BENCH_TS:-}" ]; then
    targs=(-t "$BENCH_TS")
elif [ "$R" -lt 4 ]; then
    targs=(-t 1,32,128)
fi
cargs=()
[ -n "${BENCH_CONFIG:-}" ] && cargs=(-c "$BENCH_CONFIG")
# 8 or more ranks (issue 7): E grows with R so that every rank keeps PERF.md's G
# (rows named <config>@E<E>), plus dsv3-e256-ep8 (DeepSeek-V3's E = 256, G = 32)
[ "$R" -ge 8 ] && cargs+=(-G)

cmd=("$BIN" -r "$R" "${cargs[@]}" "${targs[@]}" -w "$WARMUP" -n "$ITERS" -o "$OUTDIR/dfm.csv"
     -d "$ROUTING")
echo "== ${cmd[*]}" | tee -a "$LOG"
timeout --kill-after=10 "${BENCH_TIMEOUT:-420}" "${cmd[@]}" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "run_bench: dfm_bench rc=$rc" | tee -a "$LOG"; status=1; }

# The one-kernel fused operator (DFM_CUDA_FUSED=1) on the same cases: dfm_bench
# routes every case from a seed of (config, case, rank), so the tokens are the
# same as above. BENCH_FUSED=0 leaves it out.
if [ "${BENCH_FUSED:-1}" = 1 ]; then
    fcmd=(env DFM_CUDA_FUSED=1 "$BIN" -r "$R" "${cargs[@]}" "${targs[@]}" -w "$WARMUP" -n "$ITERS"
          -o "$OUTDIR/fused.csv")
    echo "== ${fcmd[*]}" | tee -a "$LOG"
    timeout --kill-after=10 "${BENCH_TIMEOUT:-420}" "${fcmd[@]}" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "run_bench: fused dfm_bench rc=$rc" | tee -a "$LOG"; status=1; }
    # and with communication disabled (-L: one GPU, the busiest rank's experts
    # and per-expert rows, every token local): fused minus this = what the
    # communication costs
    lcmd=(env DFM_CUDA_FUSED=1 "$BIN" -L -r "$R" "${cargs[@]}" "${targs[@]}" -w "$WARMUP" -n "$ITERS"
          -o "$OUTDIR/fused_local.csv")
    echo "== ${lcmd[*]}" | tee -a "$LOG"
    timeout --kill-after=10 "${BENCH_TIMEOUT:-420}" "${lcmd[@]}" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "run_bench: fused -L dfm_bench rc=$rc" | tee -a "$LOG"; status=1; }
fi

if [ -s "$ROUTING/manifest.csv" ]; then
    tcmd=("$PYTHON" bench/torch_baseline.py --routing "$ROUTING" --out "$OUTDIR/torch.csv"
          -w "$WARMUP" -n "$ITERS" --check)
    echo "== ${tcmd[*]}" | tee -a "$LOG"
    timeout --kill-after=10 "${TORCH_TIMEOUT:-420}" "${tcmd[@]}" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "run_bench: torch_baseline rc=$rc" | tee -a "$LOG"; status=1; }
fi

if [ -s "$OUTDIR/dfm.csv" ]; then
    "$PYTHON" bench/plot.py --dfm "$OUTDIR/dfm.csv" --torch "$OUTDIR/torch.csv" --fused "$OUTDIR/fused.csv" \
        --fused-local "$OUTDIR/fused_local.csv" \
        --csv "$OUTDIR/bench.csv" --md "$OUTDIR/table.md" --png "$OUTDIR/bench.png" \
        --title "DeepFusedMoE, $R x $card, $(date -u +%Y-%m-%d)" >/dev/null 2>>"$LOG"
    {
        echo "Card: $R x $card; date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "Command: bench/run_bench.sh  (${cmd[*]}; the same with DFM_CUDA_FUSED=1 for the fused columns, and with -L for the no-communication one; torch_baseline.py -w $WARMUP -n $ITERS)"
        grep -h '^# ' "$LOG" | grep -E 'dfm_bench:|times:|torch [0-9]|check|torch baseline:' |
            sed 's/^# /    /'
        echo
        cat "$OUTDIR/table.md"
    } >"$OUTDIR/bench.md"
    rm -f "$OUTDIR/table.md"
    echo; cat "$OUTDIR/bench.md"
fi
rm -rf "$ROUTING"
exit $status
