#!/bin/bash
# session 18, call 5 (4 x H100): branch item-trace (build-itc, stripped): the fused kernel's
# per-item trace (each CTA's items: taken, gate open, done) at T = 1 and 32, qwen3-235b and
# dsv3-e32, with and without communication (-L); and the fused suite with the trace on.
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L/items
B=build-itc
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for c in qwen3-235b dsv3-e32; do
  for t in 1 32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/main $B/dfm_bench -r 4 -c $c -t $t -s 0 -w 5 -n 20 > $L/trace_${c}_T$t.txt 2>&1; st trace_${c}_T$t $?
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/local $B/dfm_bench -r 4 -c $c -t $t -s 0 -w 5 -n 20 -L > $L/trace_${c}_T${t}_L.txt 2>&1; st trace_${c}_T${t}_L $?
  done
done
timeout 120 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $B/test_moe -b cuda -p threads -o "fused(" > $L/tm_fused_trace.txt 2>&1; st tm_fused_trace $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
