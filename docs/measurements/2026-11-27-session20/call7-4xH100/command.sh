#!/bin/bash
# session 20, call 7 (4 x H100): the fused kernel's existing knobs re-swept on main's v21
# binary (build-v21), since the kernel changed under them (tag-counts, rq-chain, spec-pf):
# default / RQ_AHEAD 0 and 2 / G2_SCATTER 0 and 1 / EAGER_RQ 1; two rounds, qwen3-235b and
# dsv3-e32 T = 1, 32, 128.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do
  for s in base DFM_CUDA_FUSED_RQ_AHEAD=0 DFM_CUDA_FUSED_RQ_AHEAD=2 DFM_CUDA_FUSED_G2_SCATTER=0 DFM_CUDA_FUSED_G2_SCATTER=1 DFM_CUDA_FUSED_EAGER_RQ=1; do
    for c in qwen3-235b dsv3-e32; do
      e=$s; [ $s = base ] && e=DFM_NOTHING=0
      timeout 60 env DFM_CUDA_FUSED=1 $e build-v21/bench/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${s}_$i.txt 2>&1; st ${c}_${s}_$i $?
    done
  done
done
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
