#!/bin/bash
# session 15, call 4: s15 at its final library code (build-s: eager 3, requant
# ahead 1): one A/B round against main (build-m), the benchmark (v17), then
# scripts/gpu_all.sh without pytest (Python unchanged), its own benchmark step
# and the promotion group (GEMM code unchanged this session)
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for b in build-m build-s; do
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_$b.txt 2>&1; st d_$b $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_$b.txt 2>&1; st q_$b $?
done
OUT=$L/bench BUILD=build-s PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 120 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
SKIP_BUILD=1 BUILD=build-s SKIP_PROMOTE=1 SKIP_PYTEST=1 SKIP_BENCH=1 TEST_TIMEOUT=150 DEMO_TIMEOUT=30 OUT=$L/ga timeout 420 bash scripts/gpu_all.sh > $L/gpu_all.out 2>&1; st gpu_all $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
