#!/bin/bash
# session 20, call 5 (4 x H100): branch spec-pf2 (build-c-spf2: spec-pf up to 4/5 of a pass of
# expected rows per expert, so dsv3-e32 T = 128 prefetches too) against main (build-v21, the v21
# table's binary): dsv3-e32 and qwen3-235b T = 128, four rounds; then the traces of main at
# dsv3-e32 T = 32 with and without communication (-L), for the communication cost; the fused
# suite on spec-pf2.
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3 4; do
  for B in build-v21 build-c-spf2; do
    X=$B/dfm_bench; [ -x $X ] || X=$B/bench/dfm_bench
    for c in dsv3-e32 qwen3-235b; do
      timeout 60 env DFM_CUDA_FUSED=1 $X -r 4 -c $c -t 128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 build-v21/bench/dfm_bench -r 4 -c dsv3-e32 -t 32 -s 0 -w 5 -n 20 > $L/trace_dsv3-e32_comm.txt 2>&1; st trace_comm $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 build-v21/bench/dfm_bench -r 4 -c dsv3-e32 -t 32 -s 0 -w 5 -n 20 -L > $L/trace_dsv3-e32_local.txt 2>&1; st trace_local $?
timeout 150 env DFM_CUDA_FUSED=1 build-c-spf2/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
