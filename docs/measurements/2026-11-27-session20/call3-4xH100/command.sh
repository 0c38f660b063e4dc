#!/bin/bash
# session 20, call 3 (4 x H100): branch spec-pf (build-c-spf): the first weight stages of a CTA's
# guessed first GEMM1 item prefetched into L2 right after the route, before the counts.
# DFM_CUDA_FUSED_SPEC_PF = 0 (off: main's kernel but for one branch) / 4 / 8 / 16 stages, three
# rounds, qwen3-235b and dsv3-e32 T = 1, 32, 128; dsv3-e256 and qwen3-30b-bf16 T = 32 with 0 / 8;
# traces at T = 32 with 0 and 8; the fused suite with 8.
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
B=build-c-spf
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for p in 0 4 8 16; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPEC_PF=$p $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_pf${p}_$i.txt 2>&1; st ${c}_pf${p}_$i $?
    done
  done
done
for i in 1 2; do
  for p in 0 8; do
    for c in dsv3-e256 qwen3-30b-bf16; do
      timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPEC_PF=$p $B/dfm_bench -r 4 -c $c -t 32 -s 0 > $L/${c}_pf${p}_$i.txt 2>&1; st ${c}_pf${p}_$i $?
    done
  done
done
for p in 0 8; do
  for c in qwen3-235b dsv3-e32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPEC_PF=$p DFM_CUDA_FUSED_TRACE=1 $B/dfm_bench -r 4 -c $c -t 32 -s 0 -w 5 -n 20 > $L/trace_${c}_pf$p.txt 2>&1; st trace_${c}_pf$p $?
  done
done
timeout 150 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPEC_PF=8 $B/test_moe -b cuda -p threads > $L/tm_fused_pf8.txt 2>&1; st tm_fused_pf8 $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
