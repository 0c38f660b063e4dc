#!/bin/bash
# session 19, call 8 (4 x H100): the owner-requantization threshold FUSED_EAGER_ROWS (an expert
# of at most that many rows is requantized entirely by the CTA that completes its GEMM1):
# main's 8 (build-v20) against 4 (build-e4c) and 16 (build-e16c), builds of main with only
# the #define's default changed. Two rounds, qwen3-235b, dsv3-e32, qwen3-30b-bf16 T = 1, 32;
# then the fused suite with build-e16c.
source scripts/gpu_env.sh
L=$OUT/c8; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do
  for B in build-v20/bench build-e4c build-e16c; do
    n=${B%%/*}
    for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32 -s 0 > $L/${c}_${n}_$i.txt 2>&1; st ${c}_${n}_$i $?
    done
  done
done
timeout 100 env DFM_CUDA_FUSED=1 build-e16c/test_moe -b cuda -p threads > $L/tm_fused_e16.txt 2>&1; st tm_fused_e16 $?
cd $OUT && tar czf c8.tgz c8 && rm -rf c8
