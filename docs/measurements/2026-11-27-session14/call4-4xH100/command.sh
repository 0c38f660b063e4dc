#!/bin/bash
# session 14, call 4: A/B main (build-b) vs gemm2-160 (build-d) vs claims of k rows
# (build-e), + the send's x loads in flight (build-f); eager 2 on build-e; trace of
# build-e; build-e's fused suites
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
D=build-e
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do for b in build-b build-d build-e build-f; do
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/fused_${b}_$i.txt 2>&1; st fused_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/fusedq_${b}_$i.txt 2>&1; st fusedq_${b}_$i $?
done; done
for b in build-e build-f; do
  timeout 60 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/pipe_${b}.txt 2>&1; st pipe_${b} $?
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=2 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/eager2_dsv3.txt 2>&1; st eager2_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=2 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/eager2_qwen.txt 2>&1; st eager2_qwen $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3.txt 2>&1; st trace_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_qwen.txt 2>&1; st trace_qwen $?
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
