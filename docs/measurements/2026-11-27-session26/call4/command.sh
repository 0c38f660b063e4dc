#!/bin/bash
# Session 26 call 4, 4 x H100 (~200 s): launch_probe with the graph cases (GPU 0); main 8d697ed
# (own-expert prefetch on, 16 stages) with its launch graph (default) against DFM_CUDA_GRAPH=0
# (plain cooperative launch) and against DFM_CUDA_FUSED_OWN_PF=0; its fused C suite.
# build-c26p: launch_probe; bins7.tar.xz m/{libdfm.so,test_moe,dfm_bench} = main 8d697ed, stripped
# `make CUDA=1 WERROR=1` build.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-300} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c26p/bins7.tar.xz; st untar $?
for i in 1 2; do timeout 60 build-c26p/launch_probe 50 >> $L/probe.txt 2>&1; st probe $?; done
for i in 1 2 3; do for v in m nograph pf0; do for c in dsv3-e32 qwen3-235b qwen3-30b-bf16; do
  e="DFM_CUDA_FUSED=1"; [ $v = nograph ] && e="$e DFM_CUDA_GRAPH=0"; [ $v = pf0 ] && e="$e DFM_CUDA_FUSED_OWN_PF=0"
  ok && { timeout 20 env $e /tmp/b/m/dfm_bench -r 4 -c $c -t 1,32 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
ok && { timeout 70 env DFM_CUDA_FUSED=1 /tmp/b/m/test_moe -b cuda -p threads > $L/m_fused.txt 2>&1; st m_fused $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
