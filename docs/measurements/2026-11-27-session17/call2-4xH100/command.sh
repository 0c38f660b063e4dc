#!/bin/bash
# session 17, call 2: branch k64 (build-k64): version 5's FP8 GEMM1 in stages of 64
# values of K (8 KB weight boxes, 64B swizzle; the f16 token order per 64), in the
# pipeline and in the fused kernel (whose GEMM2 beside it takes 64-value stages too).
# Checks: gemm_bench with version 5 forced at every shape (float64 reference), test_moe
# with version 5 forced (pipeline, fused), memcheck of the fused R = 1 FP8 cases with it;
# timings: gemm_bench shape 1 (dsv3 ~128 rows) against build-ns (main's GEMM code), the
# layer A/B against build-q2 (main's library) at dsv3-e32 T = 128, 1024.
source scripts/gpu_env.sh
L=$OUT/c2; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
K=build-k64
timeout 120 $K/bench/gemm_bench -m 1 -v t -q > $L/gemm_v5_checks.txt 2>&1; st gemm_v5_checks $?
for i in 1 2; do
  timeout 60 build-ns/bench/gemm_bench -s 1 -m 1 -v l -i 20 > $L/g_main_$i.txt 2>&1; st g_main_$i $?
  timeout 60 $K/bench/gemm_bench -s 1 -m 1 -v l -i 20 > $L/g_k64_$i.txt 2>&1; st g_k64_$i $?
done
timeout 150 env DFM_CUDA_TOK16_ROWS=0 DFM_DEBUG=1 $K/tests/test_moe -b cuda -p threads > $L/tm_pipe_tok16.txt 2>&1; st tm_pipe_tok16 $?
timeout 150 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 $K/tests/test_moe -b cuda -p threads > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
for i in 1 2; do
  for side in build-q2 $K; do
    n=${side#build-}
    timeout 60 $side/bench/dfm_bench -r 4 -c dsv3-e32 -t 128,1024 -s 0 > $L/pipe_${n}_$i.txt 2>&1; st pipe_${n}_$i $?
    timeout 60 env DFM_CUDA_FUSED=1 $side/bench/dfm_bench -r 4 -c dsv3-e32 -t 128,1024 -s 0 > $L/fused_${n}_$i.txt 2>&1; st fused_${n}_$i $?
  done
done
timeout 100 env DFM_TEST_TIMEOUT_S=90 DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $K/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused_tok16.txt 2>&1; st memcheck_fused_tok16 $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
