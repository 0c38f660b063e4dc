#!/bin/bash
# session 18, call 10 (4 x H100): main at d98a005 (build-roc stripped): the fused suite with
# version 5 forced (DFM_CUDA_TOK16_ROWS=0: GEMM1 on the widened f16 tokens, w_ready now
# GPU scope), its memcheck at R = 1, and the sequence cases with the fused kernel.
source scripts/gpu_env.sh
L=$OUT/c10; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
timeout 120 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 build-roc/test_moe -b cuda -p threads -o "fused" > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-roc/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused_tok16.txt 2>&1; st memcheck_fused_tok16 $?
cd $OUT && tar czf c10.tgz c10 && rm -rf c10
