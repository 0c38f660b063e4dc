#!/bin/bash
# session 15, call 1: A/B main (build-m) vs s15 (build-s) by environment:
# GEMM1 gate cache (default 1 on s15; 0 = main's gates), eager requant 3,
# L2 prefetch while a GEMM2 gate is closed (L2_PF2); then build-s's fused suites
# with the new paths on, and a trace.
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L
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
  run s0_$i build-s DFM_CUDA_FUSED_GATE_CACHE=0
  run e3_$i build-s DFM_CUDA_FUSED_EAGER_RQ=3
  run pf8_$i build-s DFM_CUDA_FUSED_L2_PF2=8
  run pf16_$i build-s DFM_CUDA_FUSED_L2_PF2=16
done
D=build-s
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 32,128 -s 0 -w 5 -n 20 > $L/trace_dsv3.txt 2>&1; st trace_dsv3 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c qwen3-235b -t 32,128 -s 0 -w 5 -n 20 > $L/trace_qwen.txt 2>&1; st trace_qwen $?
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=3 DFM_CUDA_FUSED_L2_PF2=8 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_e3pf.txt 2>&1; st tm_fused_e3pf $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
