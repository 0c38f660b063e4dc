#!/bin/bash
# Session 27, call 1, 4 x H100 (~560 s): session 26's two prepared calls in one
# (next/command.sh without its whole pytest, then next/ab-g2-ahead.sh):
#  1. bench/run_bench.sh on main 27de2c4's code (version 5's kernel restored: dsv3-e32 T >= 128
#     should be back at v25's ~305 us at T = 128);
#  2. the per-item trace of qwen3-235b T = 1;
#  3. A/B of branches/g2-ahead.patch (DFM_CUDA_FUSED_G2_AHEAD 0 / 12 / 24) against main, three
#     rounds, then its fused C suite and 1000-call sequence with 12 stages.
# build-c27: bins1.tar.xz m/ = stripped `make CUDA=1 WERROR=1` build of main 27de2c4;
# bins2.tar.xz g2a/ = the same of main f008c1d + g2-ahead.patch.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for n in 1 2; do tar -C /tmp/b -xJf build-c27/bins$n.tar.xz; done; st untar $?
OUT=$L/bench BUILD=/tmp/b/m PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 190 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
mkdir -p $L/items && timeout 40 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/it \
  /tmp/b/m/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/items.out 2>&1; st items $?
python3 scripts/fused_items.py "$L/items/it.qwen3-235b.T1.rank*.csv" > $L/items_summary.txt 2>&1
rm -rf $L/items
for i in 1 2 3; do for v in m a0 a12 a24; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  b=/tmp/b/g2a/dfm_bench; n=${v#a}; [ $v = m ] && { b=/tmp/b/m/dfm_bench; n=0; }
  ok 430 && { timeout 20 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_AHEAD=$n $b -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
F="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_AHEAD=12"
ok 480 && { timeout 80 $F /tmp/b/g2a/test_moe -b cuda -p threads > $L/g2a_fused.txt 2>&1; st g2a_fused $?; }
ok 520 && { timeout 60 $F /tmp/b/g2a/test_moe -b cuda -p threads -o sequence -c 1000 > $L/g2a_seq1000.txt 2>&1; st g2a_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
