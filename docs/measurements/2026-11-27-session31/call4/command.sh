#!/bin/bash
# Session 31 call 4, 1 x H100 (~150 s; guards keep it under 240). Carry build-c31/bins22.tar.xz
# (m/ = main b05cdf0, as call 3). ncu (clocks left alone) of what misses issue 4's and 5's
# targets, on this session's build: scripts/gpu_profile.sh at gemm_bench's shapes 0 (dsv3 ~32
# rows an expert), 1 (~125) and 3 (qwen3 ~30): the library's FP8 GEMM1 + GEMM2 (`-v e`) and
# QGMMA's (`-v 3`), plus the fused kernel with communication disabled (dsv3-e32 T = 32); then the
# fused kernel at qwen3-235b T = 1 and dsv3-e32 T = 128 (-L), same sections.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c31/bins22.tar.xz; st untar $?
mkdir -p /tmp/b/m/bench && ln -sf /tmp/b/m/dfm_bench /tmp/b/m/bench/dfm_bench && ln -sf /tmp/b/m/gemm_bench /tmp/b/m/bench/gemm_bench
for s in 0 1 3; do
  ok 150 && { OUT=$L/prof_s$s GEMM_SHAPE=$s BUILD=/tmp/b/m timeout 80 bash scripts/gpu_profile.sh > $L/prof_s$s.out 2>&1; st prof_s$s $?; }
done
NCU="ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats"
for ct in qwen3-235b:1 dsv3-e32:128; do
  ok 210 && { DFM_CUDA_FUSED=1 timeout 40 $NCU -k regex:fused_kernel --launch-skip 5 --launch-count 1 /tmp/b/m/dfm_bench -L -r 4 \
    -c ${ct%:*} -t ${ct#*:} -s 0 -w 5 -n 1 > $L/fused-local-${ct%:*}-T${ct#*:}.txt 2>&1; st ncu_$ct $?; }
done
cd $OUT && tar czf n.tgz n && rm -rf n
