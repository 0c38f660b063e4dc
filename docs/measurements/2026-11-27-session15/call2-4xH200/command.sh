#!/bin/bash
# session 15, call 2: A/B main (build-m) vs build-s (eager 3 default, requant
# ahead by DFM_CUDA_FUSED_RQ_AHEAD, default 2; 0 = eager 3 alone); fused suites,
# memcheck, trace of build-s.
source scripts/gpu_env.sh
L=$OUT/c2; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
run() { # name build env...
  local n=$1 b=$2; shift 2
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_${n}.txt 2>&1; st d_$n $?
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_${n}.txt 2>&1; st q_$n $?
}
for i in 1 2; do
  run m_$i build-m X=1
  run a0_$i build-s DFM_CUDA_FUSED_RQ_AHEAD=0
  run a1_$i build-s DFM_CUDA_FUSED_RQ_AHEAD=1
  run a2_$i build-s X=1
  run a4_$i build-s DFM_CUDA_FUSED_RQ_AHEAD=4
  run a8_$i build-s DFM_CUDA_FUSED_RQ_AHEAD=8
done
D=build-s
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3.txt 2>&1; st trace_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_qwen.txt 2>&1; st trace_qwen $?
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_AHEAD=8 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_tok16_a8.txt 2>&1; st tm_fused_tok16_a8 $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
