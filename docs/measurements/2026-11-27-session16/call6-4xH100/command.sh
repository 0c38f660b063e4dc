#!/bin/bash
# session 16, call 6: the steps of scripts/gpu_all.sh that call 5's 400 s limit
# cut (the fused version-5 memcheck, the three demos), on main's library (build-g)
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L
SKIP_BUILD=1 BUILD=build-g SKIP_TESTS=1 SKIP_EXTRA=1 SKIP_PROMOTE=1 SKIP_PYTEST=1 SKIP_BENCH=1 DEMO_TIMEOUT=30 OUT=$L/ga timeout 60 bash scripts/gpu_all.sh > $L/gpu_all_demos.out 2>&1; echo "demos rc=$?" >> $L/steps.txt
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-g/tests/test_moe -b cuda -p threads -o "fused(q=fp8,R=1," > $L/memcheck_fused_tok16.txt 2>&1; echo "memcheck_fused_tok16 rc=$?" >> $L/steps.txt
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
