#!/bin/bash
# Session 28 call 6, 4 x H100 (~140 s; guards keep it under 170): cnt-warps (branch cnt-warps =
# session 27's rq-warps + `DFM_CUDA_FUSED_RQ_WARPS=2`: warps 9-11 also count the CTA's GEMM1
# items, the consumers post each item and arrive on its slot's mbarrier and go on; calls 4-5's
# ncu: at qwen3-235b T = 32 7.7 % of the stall samples were consumers waiting for that count),
# build-c28/bins10 cnt/. A/B m (main 27de2c4, build-c27/bins1) / c0 (cnt, off) / c2, two rounds;
# the fused suite and 1000-call sequence at RQ_WARPS = 2.
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
for i in 1 2; do for v in m c0 c2; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 80 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L m c0 c2 > $L/ab_table.txt 2>&1
C="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=2"
ok 100 && { timeout 60 $C /tmp/b/cnt/test_moe -b cuda -p threads > $L/cnt_fused.txt 2>&1; st cnt_fused $?; }
ok 160 && { timeout 12 $C /tmp/b/cnt/test_moe -b cuda -p threads -o sequence -c 1000 > $L/cnt_seq1000.txt 2>&1; st cnt_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
