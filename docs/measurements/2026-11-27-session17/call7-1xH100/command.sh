#!/bin/bash
# session 17, call 7 (1 GPU): ncu of version 5's GEMM1 at gemm_bench shape 1 (dsv3 ~125
# rows), main's (build-ns) against branch k64's 64-value stages (build-k64, ~18% slower):
# where does a stage boundary's time go? Details page (speed of light, memory, warp
# states, scheduler, source counters) and the SASS page's stall samples as CSV.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
for b in build-ns build-k64; do
  timeout 240 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section SourceCounters --import-source yes \
    --kernel-name-base mangled -k regex:ILi0ELi1ELi5E --launch-skip 2 --launch-count 1 -f -o $L/$b \
    $b/bench/gemm_bench -s 1 -m 1 -v l -i 3 > $L/$b-run.txt 2>&1; st ncu_$b $?
  ncu -i $L/$b.ncu-rep --page details > $L/$b-details.txt 2>&1
  ncu -i $L/$b.ncu-rep --page source --csv --print-source sass > $L/$b-sass.csv 2>&1
  gzip -f $L/$b-sass.csv; rm -f $L/$b.ncu-rep
done
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
