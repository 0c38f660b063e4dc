#!/bin/bash
# session 20, call 8 (4 x H100): branch g2-rows16 (build-c-g16: FUSED_G2_SCATTER_ROWS 8 -> 16, so
# G = 32 at T = 32 takes GEMM2 expert by expert) against main's v21 binary (build-v21): two
# rounds, qwen3-235b and qwen3-30b-bf16 T = 32, 128; then the fused suite on build-c-g16.
source scripts/gpu_env.sh
L=$OUT/c8; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do
  for B in build-v21 build-c-g16; do
    X=$B/dfm_bench; [ -x $X ] || X=$B/bench/dfm_bench
    for c in qwen3-235b qwen3-30b-bf16; do
      timeout 60 env DFM_CUDA_FUSED=1 $X -r 4 -c $c -t 32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
timeout 70 env DFM_CUDA_FUSED=1 build-c-g16/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
cd $OUT && tar czf c8.tgz c8 && rm -rf c8
