#!/bin/bash
# Session 25 call 6 (4 x H100): main with r_first back where each kernel had it (bins3 r/* =
# main 7bf34f3): the fused C suite, then dsv3-e32 late / cap / r
# (late = before combine-ll, cap = 331c778), qwen3-235b and qwen3-30b-bf16 r once.
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-110} ]; }
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c25/bins1.tar.xz && tar -C /tmp/b -xJf build-c25/bins3.tar.xz; st untar $?
timeout 75 env DFM_CUDA_FUSED=1 /tmp/b/r/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
b() { timeout 20 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do for v in late cap r; do
  ok && { b /tmp/b/$v/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st dsv3_${v}_$i $?; }
done; done
ok && { b /tmp/b/r/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 >> $L/ab_r.txt 2>&1; st q235_r $?; }
ok && { b /tmp/b/r/dfm_bench -r 4 -c qwen3-30b-bf16 -t 1,32,128 -s 0 >> $L/ab_r.txt 2>&1; st q30_r $?; }
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
