#!/bin/bash
# session 17, call 3 (1 GPU): version 5's GEMM1 consumer variants, gemm_bench shape 1
# (dsv3 ~128 rows), against main's (build-ns): v1 = a stage's wgmmas as two groups (K-halves),
# the second widened while the first runs, one wait at the stage's end; v1s / v1s2 = v1 with
# warpgroup 1 started 700 / 1400 clocks after warpgroup 0 at each item (do the two
# warpgroups' stage-end drains overlap?). Built from /tmp copies of the header (the diff
# is in PERF_NOTES); checks of v1 with version 5 forced at every shape.
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
timeout 120 build-v1/gemm_bench_v1 -m 1 -v t -q > $L/v1_checks.txt 2>&1; st v1_checks $?
for i in 1 2 3; do
  for b in build-ns/bench/gemm_bench build-v1/gemm_bench_v1 build-v1/gemm_bench_v1s build-v1/gemm_bench_v1s2; do
    n=$(basename $b)
    timeout 60 $b -s 1 -m 1 -v l -i 20 > $L/g_${n}_$i.txt 2>&1; st g_${n}_$i $?
  done
done
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
