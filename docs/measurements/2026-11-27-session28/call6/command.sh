#!/bin/bash
# Session 28 call 6, 4 x H100 (~150 s; guards keep it under 190; no tar: at most 8 files, so a cut call still returns them): cnt-warps (branch cnt-warps =
# session 27's rq-warps + `DFM_CUDA_FUSED_RQ_WARPS=2`: warps 9-11 also count the CTA's GEMM1
# items, the consumers post each item and arrive on its slot's mbarrier and go on; calls 4-5's
# ncu: at qwen3-235b T = 32 7.7 % of the stall samples were consumers waiting for that count),
# build-c28/bins10 cnt/. A/B m (main 27de2c4, build-c27/bins1) / c2, two rounds (m c2, c2 m);
# the fused suite and 1000-call sequence at RQ_WARPS = 2; then c0 (cnt, off) once if time is left.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz && tar -C /tmp/b -xJf build-c28/bins10.tar.xz; st untar $?
run() {
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    c*) echo "env DFM_CUDA_FUSED_RQ_WARPS=${1#c} /tmp/b/cnt/dfm_bench" ;;
  esac
}
ab() { for v in "$@"; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 150 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c} $?; }
done; done; }
ab m c2; ab c2 m
python3 scripts/ab_means.py -v $L m c2 > $L/ab_table.txt 2>&1
C="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=2"
ok 70 && { timeout 60 $C /tmp/b/cnt/test_moe -b cuda -p threads > $L/cnt_fused.txt 2>&1; st cnt_fused $?; }
ok 135 && { timeout 12 $C /tmp/b/cnt/test_moe -b cuda -p threads -o sequence -c 1000 > $L/cnt_seq1000.txt 2>&1; st cnt_seq1000 $?; }
ab c0
python3 scripts/ab_means.py -v $L m c0 c2 > $L/ab_table.txt 2>&1
