#!/bin/bash
# session 20, call 6 (4 x H100): branch l2pf2 (build-c-pf2): a GEMM2 item's weight stages beyond
# the ring prefetched into L2 while its gate is closed. DFM_CUDA_FUSED_L2_PF2 = 0 (main's kernel
# but for one branch) / 8 / 64, three rounds, qwen3-235b and dsv3-e32 T = 1, 32, 128; the
# fused suite with 64.
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L
B=build-c-pf2
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for p in 0 8 64; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_L2_PF2=$p $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_pf${p}_$i.txt 2>&1; st ${c}_pf${p}_$i $?
    done
  done
done
timeout 150 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_L2_PF2=64 $B/test_moe -b cuda -p threads > $L/tm_fused_pf64.txt 2>&1; st tm_fused_pf64 $?
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
