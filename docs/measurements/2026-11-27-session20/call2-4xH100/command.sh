#!/bin/bash
# session 20, call 2 (4 x H100): build-c-m = main d7a9b7f (reduce-args + prologue) against
# build-c-rpf = + reduce-pf (each consumer thread prefetches its first reduction unit's expert
# ids and weights into L1 before the combine arrival): layer A/B, three rounds, qwen3-235b and
# dsv3-e32 T = 1, 32, 128; traces of both (qwen3-235b, dsv3-e32, T = 1, 32) with per-item
# records; then the fused suite on build-c-rpf.
source scripts/gpu_env.sh
L=$OUT/c2; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for B in build-c-m build-c-rpf; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for B in build-c-m build-c-rpf; do
  for c in qwen3-235b dsv3-e32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items_${c}_$B $B/dfm_bench -r 4 -c $c -t 1,32 -s 0 -w 5 -n 20 > $L/trace_${c}_$B.txt 2>&1; st trace_${c}_$B $?
  done
done
sum_of() { cat $L/qwen3-235b_$1_*.txt $L/dsv3-e32_$1_*.txt | awk '$1 ~ /^(qwen3-235b|dsv3-e32)$/ {s += $9} END {print s}'; }
a=$(sum_of build-c-m); b=$(sum_of build-c-rpf); echo "all-rows sums: main $a reduce-pf $b" >> $L/steps.txt
timeout 150 env DFM_CUDA_FUSED=1 build-c-rpf/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
