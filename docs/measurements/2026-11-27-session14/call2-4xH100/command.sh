#!/bin/bash
# session 14, call 2: A/B main (build-m), rq-cta with CAS claims + g1 count fence
# (build-c, call 1's), atomicAdd claims without (build-a) and with (build-b) the
# g1 count fence; eager 2 and the trace of build-b; build-b's fused suites
source scripts/gpu_env.sh
L=$OUT/c2; mkdir -p $L
D=build-b
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do for b in build-m build-a build-b build-c; do
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/fused_${b}_$i.txt 2>&1; st fused_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/fusedq_${b}_$i.txt 2>&1; st fusedq_${b}_$i $?
done; done
for b in build-m build-b; do
  timeout 60 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/pipe_${b}.txt 2>&1; st pipe_${b} $?
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=2 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/eager2_dsv3.txt 2>&1; st eager2_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=2 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/eager2_qwen.txt 2>&1; st eager2_qwen $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3.txt 2>&1; st trace_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 build-m/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3_m.txt 2>&1; st trace_dsv3_m $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_qwen.txt 2>&1; st trace_qwen $?
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
timeout 30 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads -o sequence -c 1000 > $L/tm_seq_fused.txt 2>&1; st tm_seq_fused $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
