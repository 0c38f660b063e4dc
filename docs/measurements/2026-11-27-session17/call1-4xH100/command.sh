#!/bin/bash
# session 17, call 1: (a) is version 5's GEMM1 short of bytes in flight? gemm_bench
# (library default GEMM1 at dsv3 ~128 rows, shape 1) with the ring capped at 2 and 3
# stages (-DWG_MAX_STAGES, build-st2/) against the uncapped build (build-ns: main's
# GEMM code); (b) branch next-send (build-ns): trace of the first send unit and the
# counts poll backoff DFM_CUDA_FUSED_COUNTS_BACKOFF=0/100/500, then the layer A/B.
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do
  for b in build-ns/bench/gemm_bench build-st2/gemm_bench3 build-st2/gemm_bench2; do
    n=$(echo $b | tr / _)
    timeout 60 $b -s 1 -m 1 -v l -i 20 > $L/g_${n}_$i.txt 2>&1; st g_${n}_$i $?
  done
done
D=build-ns
for bo in 0 100 500; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_COUNTS_BACKOFF=$bo $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 -w 5 -n 20 > $L/trace_bo$bo.txt 2>&1; st trace_bo$bo $?
done
for i in 1 2; do
  for bo in 0 100 500; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_COUNTS_BACKOFF=$bo $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/d_bo${bo}_$i.txt 2>&1; st d_bo${bo}_$i $?
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_COUNTS_BACKOFF=$bo $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32 -s 0 > $L/q_bo${bo}_$i.txt 2>&1; st q_bo${bo}_$i $?
  done
done
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
