#!/bin/bash
# session 18, call 6 (4 x H100): branch gpu-scope (build-gsc: the per-expert readiness
# words g1_ready / q_ready / w_ready with GPU-scope release/acquire) against item-trace
# (build-itc: main + the item trace; system scope as main). Layer A/B, three rounds; item
# traces at T = 1 for both; the fused suite, the pipeline and sequence cases and memcheck
# of the fused R = 1 and 2 FP8 cases with build-gsc.
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L/items
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for B in build-itc build-gsc; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for B in build-itc build-gsc; do
  for c in qwen3-235b dsv3-e32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/$B $B/dfm_bench -r 4 -c $c -t 1 -s 0 -w 5 -n 20 > $L/trace_${c}_$B.txt 2>&1; st trace_${c}_$B $?
  done
done
timeout 150 env DFM_CUDA_FUSED=1 build-gsc/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-gsc/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
