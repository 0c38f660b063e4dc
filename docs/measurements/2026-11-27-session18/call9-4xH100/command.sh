#!/bin/bash
# session 18, call 9 (4 x H100): dsv3-e256 at T = 32 and 128 (v19's T = 128 row moved
# 1088.5 -> 1134.0): main before the session's changes plus the trace (build-itc), GPU
# scope (build-gsc), and main at d98a005 (build-roc), two rounds.
source scripts/gpu_env.sh
L=$OUT/c9; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
for i in 1 2; do
  for B in build-itc build-gsc build-roc; do
    timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c dsv3-e256 -t 32,128 -s 0 > $L/e256_${B}_$i.txt 2>&1; st e256_${B}_$i $?
  done
done
cd $OUT && tar czf c9.tgz c9 && rm -rf c9
