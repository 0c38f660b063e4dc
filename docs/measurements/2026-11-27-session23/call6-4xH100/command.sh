#!/bin/bash
# session 23, call 6 (4 x H100 wanted; R=${R:-4}): m = build-v24 (main's code); late = branch
# spec-late built with -DFUSED_SPEC_PF_LATE=1 (build-c23/bins6.tar.xz: the first item's weight
# prefetch issued after the CTA's send units instead of right after the route).
# A/B, three rounds: qwen3-30b-bf16, dsv3-e32, qwen3-235b at T = 1,32,128; dsv3-e32 T = 32 -L.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c6; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c23/bins6.tar.xz; st untar $?
b() { timeout 40 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in qwen3-30b-bf16 dsv3-e32 qwen3-235b; do
    b build-v24/bench/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_m_$i.txt 2>&1; st ${c}_m_$i $?
    b /tmp/b/late/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_late_$i.txt 2>&1; st ${c}_late_$i $?
  done
done
b build-v24/bench/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 -L > $L/comm_mL.txt 2>&1; st comm_mL $?
b /tmp/b/late/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 -L > $L/comm_lateL.txt 2>&1; st comm_lateL $?
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
