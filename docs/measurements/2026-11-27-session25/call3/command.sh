#!/bin/bash
# Session 25 call 3: main 331c778 (combine-ll merged, ML capped; the cap binaries of
# build-c25/bins1.tar.xz are its code) on 4 x H100: bench/run_bench.sh twice (the v25
# table candidate and its repeat), then fused_trace.sh at qwen3-30b-bf16 T = 32 and
# dsv3-e32 T = 1 (tagged calls: no combine flags, so no "flags in" stamp).
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c25/bins1.tar.xz && mkdir -p /tmp/b/x/bench && cp /tmp/b/cap/dfm_bench /tmp/b/x/bench/; st untar $?
for i in 1 2; do
  OUT=$L/bench$i BUILD=/tmp/b/x PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 170 bash bench/run_bench.sh > $L/run_bench$i.out 2>&1; st bench$i $?
done
OUT=$L/trace BUILD=/tmp/b/x PF_LIST="8" CONFIGS="qwen3-30b-bf16:32 dsv3-e32:1" timeout 120 bash scripts/fused_trace.sh > $L/trace.out 2>&1; st trace $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
