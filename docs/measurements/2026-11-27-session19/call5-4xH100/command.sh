#!/bin/bash
# session 19, call 5 (4 x H100): branch tag-counts (build-tcc: each count word a call sends
# carries the call's tag, readers poll the words; no counts flag or system fence before the
# first items) against main (build-rqc, rq-chain). The fused suite, the fused suite with
# version 5 forced, memcheck of the fused R = 2 FP8 cases, layer A/B (three rounds,
# qwen3-235b and dsv3-e32 T = 1, 32, 128), traces at T = 1, and the Python GPU test of the
# fused kernel's 1000 graph replays on build-tcc's libdfm.so.
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
timeout 150 env DFM_CUDA_FUSED=1 build-tcc/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 120 env DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=0 build-tcc/test_moe -b cuda -p threads -o "fused" > $L/tm_fused_tok16.txt 2>&1; st tm_fused_tok16 $?
timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-tcc/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
for i in 1 2 3; do
  for B in build-rqc build-tcc; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for B in build-rqc build-tcc; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $B/dfm_bench -r 4 -c qwen3-235b -t 1,32 -s 0 -w 5 -n 20 > $L/trace_qwen3-235b_$B.txt 2>&1; st trace_$B $?
done
DFM_LIBRARY=$PWD/build-tcc/libdfm.so timeout 200 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
