#!/bin/bash
# Session 28 call 5, 1 x H100 (~150 s): call 4 at T = 32: where the fused kernel's warps stall, per SASS
# instruction (ncu SourceCounters + WarpStateStats, one launch, communication disabled: -L runs
# the busiest rank's experts and rows on one GPU), qwen3-235b and dsv3-e32, main 27de2c4's build
# (build-c27/bins1 m/). Calls 2-3: a GEMM1 item streams at ~34 GB/s an SM where ~60 CTAs stream,
# and neither fewer, longer items (g1-balance) nor cheaper widening (widen-mix) moved it.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz; st untar $?
for c in qwen3-235b dsv3-e32; do
  ok 300 || continue
  timeout 150 env DFM_CUDA_FUSED=1 ncu --clock-control none --section SourceCounters --section WarpStateStats \
    --section SpeedOfLight -f -o $L/$c -k regex:fused_kernel --launch-skip 5 --launch-count 1 \
    /tmp/b/m/dfm_bench -L -r 4 -c $c -t 32 -s 0 -w 5 -n 1 > $L/$c.ncu.txt 2>&1; st ncu_$c $?
  ncu -i $L/$c.ncu-rep --page source --csv --print-source sass > $L/$c-sass.csv 2>&1; st src_$c $?
  ncu -i $L/$c.ncu-rep --page details > $L/$c-details.txt 2>&1
  gzip -f $L/$c-sass.csv; rm -f $L/$c.ncu-rep
done
cd $OUT && tar czf n.tgz n && rm -rf n
