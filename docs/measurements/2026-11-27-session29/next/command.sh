#!/bin/bash
# For the next session (NOT RUN: this session's device time was spent), 4 x H100 (~120 s; guards keep it under 170): is the merge's +0.6..+3.4 us
# at T >= 32 in call 3 (merged e against its own mode 0) real? m (main 27de2c4) / e (merged) /
# e0 (merged, DFM_CUDA_FUSED_RQ_WARPS=0) at T = 32, 128 only, four rounds, variants interleaved.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
mkdir -p /tmp/b && for t in build-c27/bins1 build-c29/bins14; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
run() {
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    e) echo "/tmp/b/e/dfm_bench" ;;
    e0) echo "env DFM_CUDA_FUSED_RQ_WARPS=0 /tmp/b/e/dfm_bench" ;;
  esac
}
for i in 1 2 3 4; do for c in dsv3-e32 qwen3-235b qwen3-30b-bf16; do for v in m e e0; do
  ok 150 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L m e e0 > $L/ab_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
