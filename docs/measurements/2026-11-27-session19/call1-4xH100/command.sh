#!/bin/bash
# session 19, call 1: branch rq-chain (build-rqc: an owned expert raises no g1_ready, its
# requantization releases q_ready without a per-thread fence) against main (build-roc, e7270d3).
# Fused suite + memcheck with build-rqc; layer A/B, three rounds (qwen3-235b, dsv3-e32 T = 1,
# 32, 128); item traces at T = 1 (qwen3-235b, dsv3-e32) of both builds.
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L/items
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
timeout 150 env DFM_CUDA_FUSED=1 build-rqc/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-rqc/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
for i in 1 2 3; do
  for B in build-roc build-rqc; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for B in build-roc build-rqc; do
  for c in qwen3-235b dsv3-e32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/${B}_$c $B/dfm_bench -r 4 -c $c -t 1 -s 0 -w 5 -n 20 > $L/trace_${c}_$B.txt 2>&1; st trace_${c}_$B $?
  done
done
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
