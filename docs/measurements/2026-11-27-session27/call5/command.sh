#!/bin/bash
# Session 27, call 5, 4 x H100 (~130 s): main 27de2c4's own build (bins1 m/; version 5's kernel
# restored to v25's SASS in session 26, not run through the C suites since): the C test suite of
# the CUDA backend, 5-launch pipeline and fused kernel, and the fused 1000-call sequence.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz; st untar $?
ok 100 && { timeout 80 env DFM_CUDA_FUSED=1 /tmp/b/m/test_moe -b cuda -p threads > $L/fused.txt 2>&1; st fused $?; }
ok 160 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/m/test_moe -b cuda -p threads -o sequence -c 1000 > $L/seq1000.txt 2>&1; st seq1000 $?; }
ok 170 && { timeout 80 /tmp/b/m/test_moe -b cuda -p threads > $L/pipeline.txt 2>&1; st pipeline $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
