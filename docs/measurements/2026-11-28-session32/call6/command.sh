#!/bin/bash
# Session 32 call 6, 4 x H100 (~80 s; guards keep it under 100). Carry build-c32/bins25.tar.xz (r/ =
# main a12a036) and build-c32/bins26.tar.xz (e/ = r with FUSED_EAGER_RQ_INT8 0: INT8 calls default to
# EAGER_RQ 0, the others keep 3; libdfm.so, test_moe, dfm_bench).
# 1. e's test_moe INT8 cases on the library's default (the fused kernel), every R.
# 2. e against r (both DFM_CUDA_FUSED=1), two rounds: dsv3-e32-int8 T = 1, 32, 128 should read as call
#    5's e0, and dsv3-e32 (FP8) as r.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
mkdir -p /tmp/b && for t in bins25 bins26; do tar -C /tmp/b -xJf build-c32/$t.tar.xz; done; st untar $?
timeout 50 /tmp/b/e/test_moe -b cuda -p threads -o "q=int8" > $L/e_int8_suite.txt 2>&1; st e_suite $?
V=(e r)
for i in 0 1; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  ok 85 && { timeout 15 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_$i $?; }
done; done
python3 scripts/ab_means.py -v $L e r > $L/ab_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
