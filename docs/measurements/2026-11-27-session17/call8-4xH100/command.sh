#!/bin/bash
# session 17, call 8 (4 x H100): branch xpf (build-xpf): the fused kernel fetches its first
# send unit's token row into L2 at entry, under the route (DFM_CUDA_FUSED_X_PF=1, default;
# =0 off), against main (build-m17): fused layer A/B, three rounds, T = 1 and 32; then the
# fused suite and memcheck of the fused R = 1 FP8 cases with the branch's defaults.
source scripts/gpu_env.sh
L=$OUT/c8; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for side in main xpf xpf0; do
    case $side in main) D=build-m17; E=X=1 ;; xpf) D=build-xpf; E=X=1 ;; xpf0) D=build-xpf; E=DFM_CUDA_FUSED_X_PF=0 ;; esac
    for c in dsv3-e32 qwen3-235b; do
      timeout 60 env DFM_CUDA_FUSED=1 $E $D/bench/dfm_bench -r 4 -c $c -t 1,32 -s 0 > $L/${c}_${side}_$i.txt 2>&1; st ${c}_${side}_$i $?
    done
  done
done
timeout 120 env DFM_CUDA_FUSED=1 build-xpf/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-xpf/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c8.tgz c8 && rm -rf c8
