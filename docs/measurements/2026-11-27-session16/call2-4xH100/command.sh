#!/bin/bash
# session 16, call 2: where DFM_CUDA_FUSED_G2_SCATTER=1 gains (qwen3-235b) and
# loses (dsv3-e32): fused traces of build-n (next-spread) with and without it,
# and the A/B on the other configurations (dsv3-e256, qwen3-30b-bf16).
source scripts/gpu_env.sh
L=$OUT/c2; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
D=build-n
for s in 0 1; do
  for c in dsv3-e32 qwen3-235b; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_G2_SCATTER=$s $D/bench/dfm_bench -r 4 -c $c -t 32,128 -s 0 -w 5 -n 20 > $L/trace_${c}_sc$s.txt 2>&1; st trace_${c}_sc$s $?
  done
done
for i in 1 2; do
  for s in 0 1; do
    for c in dsv3-e256 qwen3-30b-bf16; do
      timeout 90 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_SCATTER=$s $D/bench/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_sc${s}_$i.txt 2>&1; st ${c}_sc${s}_$i $?
    done
  done
done
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
