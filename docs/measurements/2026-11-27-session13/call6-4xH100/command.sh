#!/bin/bash
# session 13, call 6 (4 x H100): branch send-regs: suites + A/B against main (build-c3)
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L
D=build-c6
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
for i in 1 2; do for b in build-c3 build-c6; do
  timeout 60 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/pipe_${b}_$i.txt 2>&1; st pipe_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/fused_${b}_$i.txt 2>&1; st fused_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 > $L/fusedq_${b}_$i.txt 2>&1; st fusedq_${b}_$i $?
done; done
for b in build-c3 build-c6; do
  timeout 60 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1024 -s 0 -n 20 > $L/pipe1024_${b}.txt 2>&1; st pipe1024_${b} $?
done
timeout 100 $D/tests/test_moe -b cuda -p threads > $L/tm_threads.txt 2>&1; st tm_threads $?
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 60 $D/tests/test_moe -b cuda -p procs > $L/tm_procs.txt 2>&1; st tm_procs $?
timeout 30 $D/tests/test_moe -b cuda -p threads -o sequence -c 1000 > $L/tm_seq.txt 2>&1; st tm_seq $?
timeout 30 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads -o sequence -c 1000 > $L/tm_seq_fused.txt 2>&1; st tm_seq_fused $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "pair(q=fp8,R=1," > $L/memcheck.txt 2>&1; st memcheck $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
