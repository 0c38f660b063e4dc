#!/bin/bash
# session 19, call 2 (4 x H100): stacked branches against main (build-rqc = main at rq-chain):
# build-rwc = rq-warp (an owned expert's rows two at a time), build-slc = + send-late (the CTAs
# without send units take the first items), build-gsc = + gate-share (the producer tells the
# consumers that an item's gate is open; 8 bytes spill in the FP8 kernel). Fused suite of
# build-gsc, memcheck of build-gsc's fused R = 2 FP8 cases, layer A/B (three
# rounds, qwen3-235b and dsv3-e32 T = 1, 32, 128), item traces at T = 1 of build-gsc.
source scripts/gpu_env.sh
L=$OUT/c2; mkdir -p $L/items
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for B in build-gsc; do
  timeout 150 env DFM_CUDA_FUSED=1 $B/test_moe -b cuda -p threads > $L/tm_fused_$B.txt 2>&1; st tm_fused_$B $?
done
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-gsc/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
for i in 1 2 3; do
  for B in build-rqc build-rwc build-slc build-gsc; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for c in qwen3-235b dsv3-e32; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/build-gsc_$c build-gsc/dfm_bench -r 4 -c $c -t 1 -s 0 -w 5 -n 20 > $L/trace_${c}_build-gsc.txt 2>&1; st trace_$c $?
done
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
