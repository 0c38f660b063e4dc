#!/bin/bash
# session 21, call 3 (4 x H100): branch reduce-dual (build-c-rd: the combine reduction takes its
# units two at a time where K <= 8) against main (build-c-m = the v22 table's dfm_bench), three
# rounds, dsv3-e32 and qwen3-235b T = 1 / 32 / 128 / 256, fused kernel and pipeline; the trace of
# dsv3-e32 T = 128 on the branch (the reduction's time); the whole C suite on the branch with the
# pipeline and with the fused kernel, memcheck of the fused R = 2 FP8 cases.
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for B in build-c-m build-c-rd; do
    for c in dsv3-e32 qwen3-235b; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128,256 -s 0 > $L/${c}_fused_${B}_$i.txt 2>&1; st ${c}_fused_${B}_$i $?
      timeout 60 $B/dfm_bench -r 4 -c $c -t 1,32,128,256 -s 0 > $L/${c}_pipe_${B}_$i.txt 2>&1; st ${c}_pipe_${B}_$i $?
    done
  done
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 build-c-rd/dfm_bench -r 4 -c dsv3-e32 -t 128 -s 0 -w 5 -n 20 > $L/trace_dsv3-e32_T128_rd.txt 2>&1; st trace $?
timeout 150 build-c-rd/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
timeout 150 env DFM_CUDA_FUSED=1 build-c-rd/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_TEST_TIMEOUT_S=90 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-c-rd/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
