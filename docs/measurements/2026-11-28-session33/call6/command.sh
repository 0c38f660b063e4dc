#!/bin/bash
# Session 33, call 6, 4 x H100 (~90 s). Carry build-c32n/bins27.tar.xz (v24/ = main ea1017f's kernel).
# Call 5's trace at dsv3-e32-int8 T = 1024: each CTA waits ~220 us in total before its ~24 GEMM2
# items' gates open (the requantization help and the gate), about what its GEMM2 items compute.
# The per-item trace (DFM_CUDA_FUSED_TRACE_ITEMS: every CTA's items, taken / gate open / done) at
# 4 ranks T = 1024 (INT8, FP8) and at one rank (INT8), and the knobs that touch the requantization.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz; st untar $?
B=/tmp/b/v24/dfm_bench
mkdir -p $L/items
DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/r4 timeout 60 $B -r 4 -c dsv3-e32 -t 1024 -s 0 > $L/trace_r4.txt 2>&1; st trace_r4 $?
CUDA_VISIBLE_DEVICES=0 DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/r1 timeout 60 $B -r 1 -c dsv3-e32-int8 -t 1024 -s 0 > $L/trace_r1.txt 2>&1; st trace_r1 $?
for i in 0 1; do
  for v in base EAGER_RQ=3 RQ_AHEAD=0 RQ_AHEAD=2 G2_SCATTER=0 G2_SCATTER=1 G2_SCATTER=2; do
    e=; [ $v != base ] && e=DFM_CUDA_FUSED_$v
    ok 200 && { timeout 30 env DFM_CUDA_FUSED=1 $e $B -r 4 -c dsv3-e32-int8 -t 256,1024 -s 0 >> $L/knob_$v.txt 2>&1; st knob_${v}_$i $?; }
  done
done
cd $OUT && tar czf n.tgz n && rm -rf n
