#!/bin/bash
# Session 26 call 5, 4 x H100 (~270 s): main 8d697ed (own-expert prefetch, 16 stages, on by default;
# build-c26p/bins7.tar.xz m/ = its stripped `make CUDA=1 WERROR=1` build): bench/run_bench.sh twice
# (the v26 table and its repeat), a 1000-call fused sequence, pytest's 1000 graph replays at 2 and
# 4 GPUs, memcheck of the fused FP8 R = 2 cases, and the T = 1 traces with the prefetch on.
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-340} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c26p/bins7.tar.xz && mkdir -p /tmp/b/x/bench && cp /tmp/b/m/dfm_bench /tmp/b/x/bench/; st untar $?
for i in 1 2; do
  OUT=$L/bench$i BUILD=/tmp/b/x PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 170 bash bench/run_bench.sh > $L/run_bench$i.out 2>&1; st bench$i $?
done
F="env DFM_CUDA_FUSED=1"
ok && { timeout 60 $F /tmp/b/m/test_moe -b cuda -p threads -o sequence -c 1000 > $L/seq1000.txt 2>&1; st seq1000 $?; }
ok && { DFM_LIBRARY=/tmp/b/m/libdfm.so timeout 110 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_replay.txt 2>&1; st pytest_replay $?; }
ok && { timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 /tmp/b/m/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused_fp8.txt 2>&1; st memcheck_fused_fp8 $?; }
ok && { OUT=$L/trace BUILD=/tmp/b/x PF_LIST=0 CONFIGS="qwen3-235b:1 dsv3-e32:1" STEP_TIMEOUT=40 timeout 60 bash scripts/fused_trace.sh > $L/trace.out 2>&1; st trace $?; }
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
