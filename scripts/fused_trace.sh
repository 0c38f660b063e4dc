#!/usr/bin/env bash
# fused_trace.sh - where the fused kernel spends its time, on the GPU machine:
# dfm_bench with DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 (per-CTA %globaltimer
# stamps of the last call: sends done, counts in, first GEMM1 gate open, GEMM1
# done, first GEMM2 item open, GEMM2 done, combine flags in, end; then each CTA's
# time before its items' gates opened and its items; medians and maxima over
# CTAs, per rank, on stderr) for each depth of the L2 weight
# prefetch while a GEMM1 gate is closed (DFM_CUDA_FUSED_L2_PF), and once with
# communication disabled (-L). Output: $OUT/trace.log, $OUT/csv.tar.gz
# (pf<N>-<config>.csv, local-<config>.csv).
#
#   BUILD=build-dev scripts/fused_trace.sh
#   PF_LIST="0 8 24" CONFIGS="dsv3-e32:32,128" scripts/fused_trace.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/gpu_env.sh

BUILD=${BUILD:-build}
BIN="$BUILD/bench/dfm_bench"
LOG=${OUT:-build/trace_out}
mkdir -p "$LOG/csv"
R=${BENCH_RANKS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
PF_LIST=${PF_LIST:-0 8 16 32}
CONFIGS=${CONFIGS:-dsv3-e32:32,128 qwen3-235b:32 dsv3-e256:32}
status=0

run() { # name, then the command
    local name=$1 rc
    shift
    echo "== $name: $*" | tee -a "$LOG/trace.log"
    timeout --kill-after=10 "${STEP_TIMEOUT:-120}" "$@" 2>&1 | grep -v '^config,' | tee -a "$LOG/trace.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "== $name: rc=$rc" | tee -a "$LOG/trace.log"; status=1; }
}

for spec in $CONFIGS; do
    c=${spec%%:*} ts=${spec#*:}
    for pf in $PF_LIST; do
        run "$c pf=$pf" env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_L2_PF="$pf" \
            "$BIN" -r "$R" -c "$c" -t "$ts" -w 5 -n 20 -o "$LOG/csv/pf$pf-$c.csv"
    done
    run "$c -L" env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$BIN" -L -r "$R" -c "$c" -t "$ts" -w 5 -n 20 \
        -o "$LOG/csv/local-$c.csv"
done
tar czf "$LOG/csv.tar.gz" -C "$LOG" csv && rm -rf "$LOG/csv"
exit $status
