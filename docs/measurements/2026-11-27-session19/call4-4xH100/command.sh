#!/bin/bash
# session 19, call 4 (4 x H100): what bounds a GEMM1 item at T = 1 (~15 us an item when only
# ~60 CTAs stream, 22 us when all 132 do). Measurement builds of main's fused.cu, wrong or
# out-of-SPEC results, timings only: build-nmc = -DWG_DEBUG_NOMATH=1 (the consumers drain
# the ring without math), build-pxc = -DWG_FP8_PROMOTE=128 (GEMM1 on FP8 QGMMA, no per-stage
# widening of the tokens and no 256-thread barrier). Against main (build-rqc): layer two
# rounds, item traces at T = 1.
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L/items
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do
  for B in build-rqc build-nmc build-pxc; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for B in build-rqc build-nmc build-pxc; do
  for c in qwen3-235b dsv3-e32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/${B}_$c $B/dfm_bench -r 4 -c $c -t 1 -s 0 -w 5 -n 20 > $L/trace_${c}_$B.txt 2>&1; st trace_${c}_$B $?
  done
done
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
