#!/bin/bash
# session 18, call 4 (4 x H100): branch splitk at 1e39f7d (build-skc, stripped): which
# K-splits pay. Variants by environment in one binary: v0 off; v1 GEMM1 only, parts >= 8
# stages (the default); v2 GEMM1 only, >= 4 stages; v3 both GEMMs, >= 8 stages. Layer A/B,
# two rounds, T = 1 and 32; the split test cases forced (both GEMMs, >= 2 stages); a trace
# of qwen3-235b T = 1 with v1.
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
B=build-skc
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPLITK=3 DFM_CUDA_FUSED_SPLIT_MIN=2 $B/test_moe -b cuda -p threads -o "H=1024" > $L/tm_split.txt 2>&1; st tm_split $?
for i in 1 2; do
  for v in v0 v1 v2 v3; do
    case $v in v0) E="DFM_CUDA_FUSED_SPLITK=0" ;; v1) E="DFM_CUDA_FUSED_SPLITK=1 DFM_CUDA_FUSED_SPLIT_MIN=8" ;;
      v2) E="DFM_CUDA_FUSED_SPLITK=1 DFM_CUDA_FUSED_SPLIT_MIN=4" ;; v3) E="DFM_CUDA_FUSED_SPLITK=3 DFM_CUDA_FUSED_SPLIT_MIN=8" ;; esac
    for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
      timeout 60 env DFM_CUDA_FUSED=1 $E $B/dfm_bench -r 4 -c $c -t 1,32 -s 0 > $L/${c}_${v}_$i.txt 2>&1; st ${c}_${v}_$i $?
    done
  done
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPLITK=1 DFM_CUDA_FUSED_TRACE=1 $B/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/trace_qwen_v1.txt 2>&1; st trace_v1 $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
