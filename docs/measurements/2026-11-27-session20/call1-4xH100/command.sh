#!/bin/bash
# session 20, call 1 (4 x H100): three builds, A/B of the layer (three rounds, qwen3-235b and
# dsv3-e32 T = 1, 32, 128): build-c-m = main 874d4e8; build-c-ra = + reduce-args (the combine
# reduction's arguments as values); build-c-pro = + prologue (mbarrier init and constant GEMM
# arguments before the counts wait, the polled count kept). Traces at T = 1, 32 for each. Then
# on build-c-pro (both changes): the whole C suite on the pipeline and on the fused kernel,
# memcheck of the fused R = 2 FP8 cases.
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for B in build-c-m build-c-ra build-c-pro; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for B in build-c-m build-c-ra build-c-pro; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $B/dfm_bench -r 4 -c qwen3-235b -t 1,32 -s 0 -w 5 -n 20 > $L/trace_qwen3-235b_$B.txt 2>&1; st trace_$B $?
done
timeout 150 build-c-pro/test_moe -b cuda -p threads > $L/tm_pipeline.txt 2>&1; st tm_pipeline $?
timeout 150 env DFM_CUDA_FUSED=1 build-c-pro/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_TEST_TIMEOUT_S=90 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-c-pro/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
