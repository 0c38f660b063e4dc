#!/bin/bash
# session 16, call 4: branch pf0 (build-p = main c3f6ec6 + DFM_CUDA_FUSED_PF0):
# each CTA prefetches N W1 stages of its first GEMM1 item into L2 as the
# kernel starts; N = 0 (main) / 4 / 8 / 16 / 32 by environment, one build;
# traces at 0 and 8; memcheck of the fused suite's FP8 R = 1 cases at 16.
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
D=build-p
for i in 1 2; do
  for n in 0 4 8 16 32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_PF0=$n $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_pf${n}_$i.txt 2>&1; st d_pf${n}_$i $?
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_PF0=$n $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_pf${n}_$i.txt 2>&1; st q_pf${n}_$i $?
  done
done
for n in 0 8; do
  for c in dsv3-e32 qwen3-235b; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_PF0=$n $D/bench/dfm_bench -r 4 -c $c -t 1,32 -s 0 -w 5 -n 20 > $L/trace_${c}_pf$n.txt 2>&1; st trace_${c}_pf$n $?
  done
done
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_PF0=16 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused_pf16.txt 2>&1; st memcheck_fused_pf16 $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
