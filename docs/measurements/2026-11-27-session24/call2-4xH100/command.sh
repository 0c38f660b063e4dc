#!/bin/bash
# session 24, call 2 (4 x H100 wanted; R=${R:-4}). main's kernels (= spec-late, build-c24/bins1.tar.xz late/).
# 1. DFM_CUDA_FUSED_SPEC_PF (the first GEMM1 item's weight stages prefetched into L2, now after
#    the CTA's send units) 8 (default) / 12 / 16 / 24, three rounds, T = 32, 128.
# 2. Per-CTA and per-item traces of qwen3-30b-bf16 T = 32 (and -L), SPEC_PF default.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c2; mkdir -p $L/tr
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c24/bins1.tar.xz; st untar $?
B=/tmp/b/late/dfm_bench
b() { timeout 40 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in qwen3-30b-bf16 dsv3-e32 qwen3-235b; do
    for pf in 8 12 16 24; do
      b env DFM_CUDA_FUSED_SPEC_PF=$pf $B -r $R -c $c -t 32,128 -s 0 > $L/${c}_pf${pf}_$i.txt 2>&1; st ${c}_pf${pf}_$i $?
    done
  done
done
b env DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/tr/it $B -r $R -c qwen3-30b-bf16 -t 32 -s 0 -w 5 -n 20 > $L/trace_q30.txt 2>&1; st trace_q30 $?
b env DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/tr/itL $B -r $R -c qwen3-30b-bf16 -t 32 -s 0 -w 5 -n 20 -L > $L/trace_q30L.txt 2>&1; st trace_q30L $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
