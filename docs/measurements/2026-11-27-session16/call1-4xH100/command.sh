#!/bin/bash
# session 16, call 1: A/B branch next-spread (build-n at 5cab8c9) by environment
# against main's library (build-s = 51463e4): DFM_CUDA_FUSED_EAGER_RQ=4 (spread
# the previous expert's requantization over the CTAs ending GEMM1 items) and
# DFM_CUDA_FUSED_G2_SCATTER=1 (GEMM2 items round the experts); then build-n's
# fused suites with both knobs on.
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
run() { # name build env...
  local n=$1 b=$2; shift 2
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_${n}.txt 2>&1; st d_$n $?
  timeout 60 env DFM_CUDA_FUSED=1 "$@" $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_${n}.txt 2>&1; st q_$n $?
}
for i in 1 2; do
  run m_$i build-s X=1
  run n_$i build-n X=1
  run e4_$i build-n DFM_CUDA_FUSED_EAGER_RQ=4
  run sc_$i build-n DFM_CUDA_FUSED_G2_SCATTER=1
  run es_$i build-n DFM_CUDA_FUSED_EAGER_RQ=4 DFM_CUDA_FUSED_G2_SCATTER=1
done
D=build-n; K="DFM_CUDA_FUSED_EAGER_RQ=4 DFM_CUDA_FUSED_G2_SCATTER=1"
timeout 100 env DFM_CUDA_FUSED=1 $K $D/tests/test_moe -b cuda -p threads > $L/tm_fused_es.txt 2>&1; st tm_fused_es $?
timeout 60 env DFM_CUDA_FUSED=1 $K DFM_CUDA_TOK16_ROWS=0 $D/tests/test_moe -b cuda -p threads -o fused > $L/tm_fused_tok16_es.txt 2>&1; st tm_fused_tok16_es $?
timeout 60 env DFM_TEST_TIMEOUT_S=50 DFM_CUDA_FUSED=1 $K compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $D/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused_es.txt 2>&1; st memcheck_fused_es $?
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
