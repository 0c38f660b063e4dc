#!/bin/bash
# session 15, call 3: A/B main (build-m) vs build-s (eager 3, requant ahead 1)
# vs build-x (+ row max from GEMM1's epilogue, requantization a warp a row);
# build-x with eager 2 and with ahead 0; build-x's suites, memcheck, trace.
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
run() { # name build env...
  local n=$1 b=$2; shift 2
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_${n}.txt 2>&1; st d_$n $?
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_${n}.txt 2>&1; st q_$n $?
}
for i in 1 2; do
  run m_$i build-m X=1
  run s_$i build-s X=1
  run x_$i build-x X=1
  run xe2_$i build-x DFM_CUDA_FUSED_EAGER_RQ=2
  run xa0_$i build-x DFM_CUDA_FUSED_RQ_AHEAD=0
done
D=build-x
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=2 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_tok16_e2.txt 2>&1; st tm_fused_tok16_e2 $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3.txt 2>&1; st trace_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 -w 5 -n 20 > $L/trace_qwen.txt 2>&1; st trace_qwen $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
