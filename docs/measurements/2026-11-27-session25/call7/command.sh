#!/bin/bash
# Session 25 call 7 (4 x H100): is dsv3-e32 T = 32's ~1-2 us (untagged, identical kernels) the
# region's growth? late (before combine-ll) / r (main 7bf34f3) / ml0 (main built with
# DFM_COMBINE_LL_ELEMS=0: no combine_ll region, never tagged), T = 32, rounds until GUARD.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-45} ]; }
mkdir -p /tmp/b && for n in 1 3 4; do tar -C /tmp/b -xJf build-c25/bins$n.tar.xz; done; st untar $?
for i in 1 2 3 4; do for v in late r ml0; do
  ok && { timeout 15 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c dsv3-e32 -t 32 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_$i $?; }
done; done
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
