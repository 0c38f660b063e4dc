#!/bin/bash
# session 18, call 7 (4 x H100): branch rq-owner (build-roc: gpu-scope + an expert of <= 8
# rows requantized by the CTA completing its GEMM1, no claims or counts) against gpu-scope
# (build-gsc). Layer A/B, three rounds (qwen3-235b, dsv3-e32 T = 1, 32, 128; dsv3-e32-int8
# and qwen3-30b-bf16 T = 1, 32); item traces at T = 1; the whole C suite (threads) and
# memcheck of the fused R = 2 FP8 cases with build-roc.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L/items
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for B in build-gsc build-roc; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
    timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c qwen3-30b-bf16 -t 1,32 -s 0 > $L/qwen3-30b-bf16_${B}_$i.txt 2>&1; st q30_${B}_$i $?
  done
done
for B in build-gsc build-roc; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/$B $B/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/trace_qwen3-235b_$B.txt 2>&1; st trace_$B $?
done
timeout 150 env DFM_CUDA_FUSED=1 build-roc/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-roc/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
