#!/bin/bash
# session 17, call 4 (1 GPU): did version 5's 64-value stages (branch k64, build-k64) lose
# because their 64-byte weight boxes fetch half an L2 line each, evicted first (-w 1, the
# library's policy) before the next stage reads the other half? gemm_bench shape 1 with
# -w 1 and -w 0 (normal L2 policy), against main's GEMM code (build-ns).
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do
  for w in 1 0; do
    for b in build-ns/bench/gemm_bench build-k64/bench/gemm_bench; do
      n=$(echo $b | cut -d/ -f1)
      timeout 60 $b -s 1 -m 1 -v l -i 20 -w $w > $L/g_${n}_w${w}_$i.txt 2>&1; st g_${n}_w${w}_$i $?
    done
  done
done
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
