#!/usr/bin/env bash
# gpu_profile.sh - Nsight Compute profiles of the kernels that miss their floors, in one
# device call (one GPU is enough), from a build made elsewhere (BUILD=, default build):
#   1. the expert GEMMs alone at dsv3 G=8 ~32 rows (gemm_bench -s 0), FP8: the default
#      f16 path (v3f16) and QGMMA (v3), GEMM1 and GEMM2 of one launch each;
#   2. the one-kernel fused operator with communication disabled (dfm_bench -L: one GPU,
#      the busiest rank's experts and rows of dsv3-e32 at T = 32; a multi-GPU fused
#      kernel cannot be replayed by ncu, it waits on its peers).
# Sections: speed of light, memory workload, warp states, scheduler. Clocks left alone
# (--clock-control none, the device tool's METHOD.md). Output in $OUT (or
# build/gpu_profile): one .txt per profile (ncu's details page) and summary.txt.
#
#   BUILD=build-dev scripts/gpu_profile.sh
#   GEMM_SHAPE=1 BUILD=build-dev scripts/gpu_profile.sh   the GEMMs at gemm_bench's shape 1
#       (dsv3 ~125 rows; 0-4 as gemm_bench -s) instead of shape 0
#   SOURCE=1 BUILD=build-dev scripts/gpu_profile.sh   instead: warp-stall samples per SASS
#       instruction (ncu SourceCounters) of the default FP8 GEMM1 + GEMM2 and of the fused
#       kernel (-L), as CSV (<name>-sass.csv: one row per instruction with its stall reasons)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/gpu_env.sh # no NVLink multicast; torch's NCCL first
BUILD=${BUILD:-build}
LOG=${OUT:-build/gpu_profile}
mkdir -p "$LOG"
SUMMARY="$LOG/summary.txt"
: >"$SUMMARY"
NCU=(ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis
     --section WarpStateStats --section SchedulerStats)
status=0

# run_ncu NAME TIMEOUT CMD...: the command under its timeout, its output to $LOG/NAME.txt;
# its exit status in last_rc (and status=1 when it failed)
run_ncu() {
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee -a "$SUMMARY"
    timeout --kill-after=10 "$limit" "$@" >"$LOG/$name.txt" 2>&1
    last_rc=$?
    [ $last_rc -eq 0 ] || status=1
}

# profile NAME TIMEOUT CMD...: ncu's report to $LOG/NAME.txt, the headline metrics to summary
profile() {
    run_ncu "$@"
    grep -E '^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|Stall|One or More Eligible|No Eligible' \
        "$LOG/$1.txt" | head -60 | tee -a "$SUMMARY"
    echo "== $1: rc=$last_rc" | tee -a "$SUMMARY"
}

if [ "${SOURCE:-0}" = 1 ]; then
    SRC=(ncu --clock-control none --section SourceCounters --section WarpStateStats --import-source yes)
    # source NAME TIMEOUT CMD...: report to NAME.ncu-rep, its SASS page as CSV
    source_page() {
        local name=$1
        run_ncu "$@"
        echo "== $name: rc=$last_rc" | tee -a "$SUMMARY"
        ncu -i "$LOG/$name.ncu-rep" --page source --csv --print-source sass >"$LOG/$name-sass.csv" 2>&1 ||
            ncu -i "$LOG/$name.ncu-rep" --page source --csv >"$LOG/$name-sass.csv" 2>&1
        ncu -i "$LOG/$name.ncu-rep" --page details >>"$LOG/$name.txt" 2>&1
        gzip -f "$LOG/$name-sass.csv"
        rm -f "$LOG/$name.ncu-rep"
    }
    source_page gemm-src 300 "${SRC[@]}" -f -o "$LOG/gemm-src" -k regex:wg_gemm_kernel --launch-skip 4 --launch-count 2 \
        "$BUILD/bench/gemm_bench" -s "${GEMM_SHAPE:-0}" -m 1 -v e -i 3
    source_page fused-src 300 env DFM_CUDA_FUSED=1 "${SRC[@]}" -f -o "$LOG/fused-src" -k regex:fused_kernel --launch-skip 5 \
        --launch-count 1 "$BUILD/bench/dfm_bench" -L -r 4 -c dsv3-e32 -t 32 -s 0 -w 5 -n 1
    exit $status
fi

# 1. GEMMs: launch 0..3 of each version are the correctness checks; skip them.
for v in e 3; do
    profile "gemm-v$v" 240 "${NCU[@]}" -k regex:wg_gemm_kernel --launch-skip 4 --launch-count 2 \
        "$BUILD/bench/gemm_bench" -s "${GEMM_SHAPE:-0}" -m 1 -v "$v" -i 3
done
# 2. the fused kernel, communication disabled, one GPU
profile fused-local 240 env DFM_CUDA_FUSED=1 "${NCU[@]}" -k regex:fused_kernel --launch-skip 5 \
    --launch-count 1 "$BUILD/bench/dfm_bench" -L -r 4 -c dsv3-e32 -t 32 -s 0 -w 5 -n 1
exit $status
