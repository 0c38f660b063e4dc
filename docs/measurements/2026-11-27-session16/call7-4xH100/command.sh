#!/bin/bash
# session 16, call 7: branch send-probe (build-q = main + a "routed" trace
# stamp, the CTAs whose sends end last, DFM_CUDA_FUSED_PARTS (dispatch units
# per token) and DFM_CUDA_FUSED_SEND_SKIP0=1 (CTA 0, which writes the counts,
# takes the last unit instead of the first)): why the last CTA's send ends
# at ~13 us at T = 1 while the median CTA's ends at ~4.5.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
D=build-q
tr() { # name env...
  local n=$1; shift
  for c in dsv3-e32 qwen3-235b; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@" $D/bench/dfm_bench -r 4 -c $c -t 1,32 -s 0 -w 5 -n 20 > $L/trace_${c}_$n.txt 2>&1; st trace_${c}_$n $?
  done
}
tr def X=1
tr skip0 DFM_CUDA_FUSED_SEND_SKIP0=1
tr parts1 DFM_CUDA_FUSED_PARTS=1
tr parts56 DFM_CUDA_FUSED_PARTS=56
for n in 0 1; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SEND_SKIP0=$n $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_skip$n.txt 2>&1; st d_skip$n $?
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SEND_SKIP0=$n $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_skip$n.txt 2>&1; st q_skip$n $?
done
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
