#!/bin/bash
# session 21, call 1 (4 x H100): branch reduce-warm (build-c-rw; its default FUSED_REDUCE_WARM 0
# is main's behaviour): DFM_CUDA_FUSED_REDUCE_WARM 0 / 1 / 2, three rounds, dsv3-e32 and
# qwen3-235b T = 1 / 32 / 128; traces of qwen3-235b T = 1 with 0 and 2; on the same binary
# (main's kernels otherwise) the GEMM2 order at T = 48 / 64 / 96 (DFM_CUDA_FUSED_G2_SCATTER 0 / 1)
# and the GEMM1-gate L2 prefetch at T = 1 (DFM_CUDA_FUSED_L2_PF 0 / 8); the fused suite and
# memcheck of the fused R = 2 FP8 cases with REDUCE_WARM 2.
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
B=build-c-rw
for i in 1 2 3; do
  for v in 0 1 2; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_REDUCE_WARM=$v $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_rw${v}_$i.txt 2>&1; st ${c}_rw${v}_$i $?
    done
  done
done
for v in 0 2; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_REDUCE_WARM=$v $B/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/trace_qwen3-235b_rw$v.txt 2>&1; st trace_rw$v $?
done
for i in 1 2; do
  for v in 0 1; do
    for c in qwen3-235b qwen3-30b-bf16; do
      timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_SCATTER=$v $B/dfm_bench -r 4 -c $c -t 48,64,96 -s 0 > $L/${c}_g2s${v}_$i.txt 2>&1; st ${c}_g2s${v}_$i $?
    done
  done
  for v in 0 8; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_L2_PF=$v $B/dfm_bench -r 4 -c $c -t 1 -s 0 > $L/${c}_l2pf${v}_$i.txt 2>&1; st ${c}_l2pf${v}_$i $?
    done
  done
done
timeout 150 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_REDUCE_WARM=2 $B/test_moe -b cuda -p threads > $L/tm_fused_rw2.txt 2>&1; st tm_fused_rw2 $?
timeout 100 env DFM_TEST_TIMEOUT_S=90 DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_REDUCE_WARM=2 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused_rw2.txt 2>&1; st memcheck_fused_rw2 $?
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
