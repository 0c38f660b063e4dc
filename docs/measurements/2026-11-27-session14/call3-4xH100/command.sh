#!/bin/bash
# session 14, call 3: A/B main (build-b = rq-cta) vs gemm2-160 (build-d: GEMM2
# passes of 160 columns, trace waits, DFM_CUDA_FUSED_LAG); the lag sweep; traces;
# build-d's suites (fused default, tok16, lag 0 and 1, memcheck, pipeline)
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
D=build-d
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do for b in build-b build-d; do
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/fused_${b}_$i.txt 2>&1; st fused_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/fusedq_${b}_$i.txt 2>&1; st fusedq_${b}_$i $?
done; done
for lag in 0 2 4; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_LAG=$lag $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/lag${lag}_dsv3.txt 2>&1; st lag${lag}_dsv3 $?
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_LAG=$lag $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/lag${lag}_qwen.txt 2>&1; st lag${lag}_qwen $?
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3.txt 2>&1; st trace_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_qwen.txt 2>&1; st trace_qwen $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_LAG=2 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 -w 5 -n 20 > $L/trace_dsv3_lag2.txt 2>&1; st trace_dsv3_lag2 $?
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_LAG=0 $D/tests/test_moe -b cuda -p threads > $L/tm_fused_lag0.txt 2>&1; st tm_fused_lag0 $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_LAG=1 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_lag1_tok16.txt 2>&1; st tm_fused_lag1_tok16 $?
timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_LAG=1 $D/tests/test_moe -b cuda -p threads -o sequence -c 1000 > $L/tm_seq_fused_lag1.txt 2>&1; st tm_seq_fused_lag1 $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
timeout 100 $D/tests/test_moe -b cuda -p threads > $L/tm_threads.txt 2>&1; st tm_threads $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
