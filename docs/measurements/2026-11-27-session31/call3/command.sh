#!/bin/bash
# Session 31 call 3, 4 x H100 (~250 s; guards keep it under 330). Carry build-c31/bins22.tar.xz:
# m/ = a stripped `make CUDA=1 WERROR=1` build of main b05cdf0 (libdfm.so, test_moe, dfm_bench,
# gemm_bench). 1. The GEMM-only table (`gemm_bench -q -v 3l`, GPU 0, every quant and shape, its
# float64 checks first), twice. 2. `bench/run_bench.sh` on all four GPUs: the v31 table.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c31/bins22.tar.xz; st untar $?
mkdir -p /tmp/b/m/bench && ln -sf /tmp/b/m/dfm_bench /tmp/b/m/bench/dfm_bench
for i in 1 2; do
  ok 80 && { CUDA_VISIBLE_DEVICES=0 timeout 60 /tmp/b/m/gemm_bench -q -v 3l -o $L/gemm_$i.csv > $L/gemm_$i.txt 2>&1; st gemm_$i $?; }
done
ok 130 && { OUT=$L/bench BUILD=/tmp/b/m PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 200 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
