#!/bin/bash
# session 16, call 8: branch send-probe at 'fused dispatch: CTA 0 takes the last
# send unit ... only the CTAs with units arrive' (build-q2; both on by default,
# DFM_CUDA_FUSED_SEND_SKIP0=0 / DFM_CUDA_FUSED_ARRIVE_WORK=0 turn them off):
# A/B two rounds at T = 1, 32, a trace, then the fused suite, the pipeline
# suite (dispatch.cu's send helper got a parameter) and memcheck of the fused
# R = 1 FP8 cases, all with the defaults.
source scripts/gpu_env.sh
L=$OUT/c8; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
D=build-q2
run() { # name env...
  local n=$1; shift
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/d_${n}.txt 2>&1; st d_$n $?
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32 -s 0 > $L/q_${n}.txt 2>&1; st q_$n $?
}
for i in 1 2; do
  run off_$i DFM_CUDA_FUSED_SEND_SKIP0=0 DFM_CUDA_FUSED_ARRIVE_WORK=0
  run skip0_$i DFM_CUDA_FUSED_ARRIVE_WORK=0
  run both_$i X=1
done
for c in dsv3-e32 qwen3-235b; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $D/bench/dfm_bench -r 4 -c $c -t 1,32 -s 0 -w 5 -n 20 > $L/trace_$c.txt 2>&1; st trace_$c $?
done
timeout 100 env DFM_CUDA_FUSED=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 $D/tests/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c8.tgz c8 && rm -rf c8
