#!/bin/bash
# Session 27, call 2, 4 x H100 (~300 s): does the ring's depth (weight loads in flight, ~27 MB
# queued over 132 CTAs at 13 slots) slow the call's latency-bound steps (flags, requantization,
# combine)? Branch ring-cap (827c211: DFM_CUDA_FUSED_STAGES caps the ring's slots; 0 = as many
# as fit, main's behaviour): caps 0 / 4 / 6 / 8, three rounds; the per-item trace of qwen3-235b
# T = 1 at 0 and 6; the fused C suite and the 1000-call sequence at cap 4.
# build-c27/bins3.tar.xz cap/{libdfm.so,test_moe,dfm_bench} = stripped `make CUDA=1 WERROR=1`
# build of 827c211.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins3.tar.xz; st untar $?
B=/tmp/b/cap
for i in 1 2 3; do for v in 0 4 6 8; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 250 && { timeout 20 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_STAGES=$v $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_c$v.txt 2>&1; st c${v}_${c}_$i $?; }
done; done; done
for v in 0 6; do
  mkdir -p $L/items$v && timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_STAGES=$v DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items$v/it \
    $B/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/items$v.out 2>&1; st items$v $?
  python3 scripts/fused_items.py "$L/items$v/it.qwen3-235b.T1.rank*.csv" > $L/items${v}_summary.txt 2>&1
done
F="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_STAGES=4"
ok 380 && { timeout 80 $F $B/test_moe -b cuda -p threads > $L/cap4_fused.txt 2>&1; st cap4_fused $?; }
ok 440 && { timeout 60 $F $B/test_moe -b cuda -p threads -o sequence -c 1000 > $L/cap4_seq1000.txt 2>&1; st cap4_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
