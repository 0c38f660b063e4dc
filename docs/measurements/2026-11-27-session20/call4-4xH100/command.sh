#!/bin/bash
# session 20, call 4 (4 x H100): main at 5ff9fbf (build-v21 = build-m20 stripped: reduce-args,
# prologue and spec-pf 8 on top of the nineteenth session's kernels): the whole benchmark
# (bench/run_bench.sh: table v21 and plot), the Python GPU tests of the fused kernel (1000 graph
# replays at 2 and 4 GPUs) on its libdfm.so, memcheck of the fused R = 2 FP8 cases.
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
OUT=$L/bench BUILD=build-v21 PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 150 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
DFM_LIBRARY=$PWD/build-v21/libdfm.so timeout 200 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
timeout 100 env DFM_TEST_TIMEOUT_S=90 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-v21/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
