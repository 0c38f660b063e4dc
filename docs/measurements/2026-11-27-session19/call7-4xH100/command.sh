#!/bin/bash
# session 19, call 7 (4 x H100): main at cc69660 (build-v20 = build-m19 stripped: rq-chain
# and tag-counts on top of the eighteenth session's kernels): the whole
# benchmark (bench/run_bench.sh: table v20 and plot), then the Python GPU tests of the
# fused kernel (1000 graph replays at 2 and 4 GPUs) on its libdfm.so.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
OUT=$L/bench BUILD=build-v20 PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 150 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
DFM_LIBRARY=$PWD/build-v20/libdfm.so timeout 200 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
