#!/usr/bin/env bash
# gpu_ab.sh - A/B of two builds on the same GPUs in one device call: dfm_bench of
# build A and build B, interleaved (A B A B ...), for the unfused pipeline and the
# one-kernel fused operator. Compare only numbers from the same call (same machine).
#
#   A=build-main B=build-dev scripts/gpu_ab.sh
#   A=... B=... ROUNDS=2 CASES="dsv3-e32:32,128 qwen3-235b:32" MODES="pipe fused local" scripts/gpu_ab.sh
# (MODES: pipe = the pipeline, fused = DFM_CUDA_FUSED=1, local = fused with -L)
# Output: $OUT/ab.log (or build/ab_out/ab.log): each run's table rows, tagged.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/gpu_env.sh
A=${A:?A=build dir}
B=${B:?B=build dir}
LOG=${OUT:-build/ab_out}
mkdir -p "$LOG"
ROUNDS=${ROUNDS:-2}
CASES=${CASES:-dsv3-e32:1,32,128 qwen3-235b:32}
MODES=${MODES:-pipe fused}
R=${BENCH_RANKS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
status=0
for r in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        for c in $CASES; do
            for side in A B; do
                dir=${!side}
                env=() extra=()
                case $mode in
                    fused) env=(DFM_CUDA_FUSED=1) ;;
                    local) env=(DFM_CUDA_FUSED=1) extra=(-L) ;; # the fused kernel, no communication
                esac
                out=$(timeout --kill-after=10 "${STEP_TIMEOUT:-120}" env "${env[@]}" \
                      "$dir/bench/dfm_bench" -r "$R" -c "${c%%:*}" -t "${c#*:}" -w 5 -n "${ITERS:-30}" "${extra[@]}" 2>&1)
                rc=$?
                [ $rc -eq 0 ] || status=1
                echo "$out" | grep -E "^${c%%:*} " | sed "s/^/$side $mode r$r /" | tee -a "$LOG/ab.log"
                [ $rc -eq 0 ] || echo "$side $mode r$r ${c}: rc=$rc $(echo "$out" | tail -3)" | tee -a "$LOG/ab.log"
            done
        done
    done
done
exit $status
