#!/bin/bash
# session 14, call 1 (4 x H100): A/B main (build-m) vs rq-cta (build-c), the
# EAGER_RQ sweep on rq-cta, its trace, then rq-cta's fused/pipeline suites + sanitizers
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L
D=build-c
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do for b in build-m build-c; do
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/fused_${b}_$i.txt 2>&1; st fused_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/fusedq_${b}_$i.txt 2>&1; st fusedq_${b}_$i $?
done; done
for e in 0 2; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=$e $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/eager${e}_dsv3.txt 2>&1; st eager${e}_dsv3 $?
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=$e $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/eager${e}_qwen.txt 2>&1; st eager${e}_qwen $?
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3.txt 2>&1; st trace_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32 -s 0 -w 5 -n 20 > $L/trace_qwen.txt 2>&1; st trace_qwen $?
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
timeout 30 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads -o sequence -c 1000 > $L/tm_seq_fused.txt 2>&1; st tm_seq_fused $?
timeout 100 $D/tests/test_moe -b cuda -p threads > $L/tm_threads.txt 2>&1; st tm_threads $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool racecheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/racecheck_fused.txt 2>&1; st racecheck_fused $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "pair(q=fp8,R=1," > $L/memcheck.txt 2>&1; st memcheck $?
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
