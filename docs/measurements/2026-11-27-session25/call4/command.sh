#!/bin/bash
# Session 25 call 4: main 331c778 (combine-ll merged) on 4 x H100, the checks its change
# touches that calls 1-2 did not run. build-c25/bins1.tar.xz cap/* = main's code;
# bins2.tar.xz ml4/test_moe = the same built with DFM_COMBINE_LL_TOKENS=4 (CC and NVCC), so
# that cases with M = 8 mix tagged calls (every rank's T <= 4) and untagged ones.
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-330} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c25/bins1.tar.xz && tar -C /tmp/b -xJf build-c25/bins2.tar.xz; st untar $?
F="env DFM_CUDA_FUSED=1"
ok && { timeout 90 $F /tmp/b/ml4/test_moe -b cuda -p threads > $L/ml4_fused.txt 2>&1; st ml4_fused $?; }
ok && { timeout 60 $F /tmp/b/ml4/test_moe -b cuda -p threads -o sequence -c 1000 > $L/ml4_seq1000.txt 2>&1; st ml4_seq1000 $?; }
ok && { timeout 60 $F /tmp/b/cap/test_moe -b cuda -p threads -o sequence -c 1000 > $L/seq1000.txt 2>&1; st seq1000 $?; }
ok && { timeout 90 $F /tmp/b/cap/test_moe -b cuda -p procs > $L/procs_fused.txt 2>&1; st procs_fused $?; }
ok && { timeout 90 $F DFM_CUDA_TOK16_ROWS=0 /tmp/b/cap/test_moe -b cuda -p threads > $L/fused_tok16.txt 2>&1; st fused_tok16 $?; }
ok && { timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 /tmp/b/cap/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused_fp8.txt 2>&1; st memcheck_fused_fp8 $?; }
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
