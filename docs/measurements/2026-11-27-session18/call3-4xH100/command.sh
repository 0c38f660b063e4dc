#!/bin/bash
# session 18, call 3 (4 x H100): branch splitk (build-skc = build-sk stripped, 2d0 head):
# K-split items in the fused kernel (DFM_CUDA_FUSED_SPLITK=1 default, =0 off): the fused
# suites (threads; the new H=1024 cases split GEMM1 in 4 and GEMM2 in 2), memcheck of the
# split cases, then the layer A/B by environment in one binary, three rounds, and a trace of
# qwen3-235b T = 1 each way.
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
B=build-skc
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
timeout 150 env DFM_CUDA_FUSED=1 $B/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 env DFM_TEST_TIMEOUT_S=90 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/test_moe -b cuda -p threads -o "H=1024" > $L/memcheck_split.txt 2>&1; st memcheck_split $?
for i in 1 2 3; do
  for sk in 0 1; do
    for c in qwen3-235b dsv3-e32 dsv3-e32-int8 qwen3-30b-bf16; do
      timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPLITK=$sk $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_sk${sk}_$i.txt 2>&1; st ${c}_sk${sk}_$i $?
    done
  done
done
for sk in 0 1; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPLITK=$sk DFM_CUDA_FUSED_TRACE=1 $B/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/trace_qwen_sk$sk.txt 2>&1; st trace_sk$sk $?
done
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPLITK=1 $B/dfm_bench -r 4 -c dsv3-e256 -t 1,32 -s 0 > $L/dsv3-e256_sk1.txt 2>&1; st e256_sk1 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPLITK=0 $B/dfm_bench -r 4 -c dsv3-e256 -t 1,32 -s 0 > $L/dsv3-e256_sk0.txt 2>&1; st e256_sk0 $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
