#!/bin/bash
# session 13, call 5 (4 x H100): bench v15 rerun, host overhead x3, fused trace (s13a)
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
OUT=$L/bench BUILD=build-c3 PYTHON=python3 BENCH_TIMEOUT=150 TORCH_TIMEOUT=120 timeout 200 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
for i in 1 2 3; do
  DFM_LIBRARY=$PWD/build-c3/libdfm.so timeout 60 python3 -m pytest -v -s -k host_overhead tests/python/test_cuda.py 2>&1 | grep -E "host overhead\]|passed|failed" >> $L/host.txt; st host_$i $?
done
OUT=$L/trace PF_LIST=0 CONFIGS="qwen3-235b:1 dsv3-e32:1,32" BUILD=build-c3 STEP_TIMEOUT=60 timeout 150 bash scripts/fused_trace.sh > $L/trace.out 2>&1; st trace $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
