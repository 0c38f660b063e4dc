#!/bin/bash
# session 14, call 5 (4 x H100): main at 6643784 (build-v): the benchmark (v16),
# then scripts/gpu_all.sh without pytest, its own benchmark step and the
# promotion group (GEMM defaults unchanged this session)
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
OUT=$L/bench BUILD=build-v PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 120 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
SKIP_BUILD=1 BUILD=build-v SKIP_PROMOTE=1 SKIP_PYTEST=1 SKIP_BENCH=1 TEST_TIMEOUT=150 DEMO_TIMEOUT=30 OUT=$L/ga timeout 370 bash scripts/gpu_all.sh > $L/gpu_all.out 2>&1; st gpu_all $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
