#!/bin/bash
# session 21, call 4 (run as `R=2 bash command.sh` on 2 x H100: no 4-GPU kind was lent then): branch reduce-dual with the dry run's stride fixed (build-c-rd)
# against main (build-c-m = the v22 table's dfm_bench), two rounds, dsv3-e32 and qwen3-235b T = 1 /
# 32 / 128 / 256 with the fused kernel; the trace of dsv3-e32 T = 128 on the branch; the fused
# suite and memcheck of the fused R = 2 FP8 cases on the branch (its pipeline suite passed in call 3).
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
timeout 120 env DFM_CUDA_FUSED=1 build-c-rd/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
for i in 1 2; do
  for B in build-c-m build-c-rd; do
    for c in dsv3-e32 qwen3-235b; do
      timeout 30 env DFM_CUDA_FUSED=1 $B/dfm_bench -r ${R:-4} -c $c -t 1,32,128,256 -s 0 > $L/${c}_fused_${B}_$i.txt 2>&1; st ${c}_fused_${B}_$i $?
    done
  done
done
timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 build-c-rd/dfm_bench -r ${R:-4} -c dsv3-e32 -t 128 -s 0 -w 5 -n 20 > $L/trace_dsv3-e32_T128_rd.txt 2>&1; st trace $?
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-c-rd/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
