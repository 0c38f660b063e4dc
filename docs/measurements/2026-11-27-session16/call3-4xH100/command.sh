#!/bin/bash
# session 16, call 3: A/B main's library (build-s, 51463e4) against build-r
# (the combine reduction with its slots' loads in flight, shared by combine.cu
# and the fused kernel) and build-g (build-r + GEMM2 items round the experts,
# FUSED_G2_SCATTER 2 = where G >= 16 and >= 8 rows per expert); fused and
# pipeline; then build-g's suites (pipeline; fused, fused version 5 and memcheck with
# DFM_CUDA_FUSED_G2_SCATTER=1: the suite's G < 16 keeps the default order).
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
run() { # name build env...
  local n=$1 b=$2; shift 2
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_${n}.txt 2>&1; st d_$n $?
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_${n}.txt 2>&1; st q_$n $?
}
pipe() { # name build
  timeout 60 $2/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/p_$1.txt 2>&1; st p_$1 $?
}
for i in 1 2; do
  run s_$i build-s X=1
  run r_$i build-r X=1
  run g_$i build-g X=1
  pipe s_$i build-s
  pipe g_$i build-g
done
for b in s g; do
  for c in dsv3-e256 qwen3-30b-bf16; do
    timeout 90 env DFM_CUDA_FUSED=1 build-$b/bench/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_$b.txt 2>&1; st ${c}_$b $?
  done
done
D=build-g
timeout 120 $D/tests/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_SCATTER=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused_sc1.txt 2>&1; st tm_fused_sc1 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_SCATTER=1 DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_tok16_sc1.txt 2>&1; st tm_fused_tok16_sc1 $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_SCATTER=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused_sc1.txt 2>&1; st memcheck_fused_sc1 $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
