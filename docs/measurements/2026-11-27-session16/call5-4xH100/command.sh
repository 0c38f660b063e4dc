#!/bin/bash
# session 16, call 5: main's library (build-g = c3f6ec6: GEMM2 items round the
# experts where G >= 16 with >= 8 rows each; the shared combine reduction):
# one A/B round against the fifteenth session's (build-s), the benchmark
# (v18), then scripts/gpu_all.sh without pytest (Python unchanged), its own
# benchmark step and the promotion group (GEMM kernels unchanged)
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for b in build-s build-g; do
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32,128 -s 0 > $L/d_$b.txt 2>&1; st d_$b $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1,32,128 -s 0 > $L/q_$b.txt 2>&1; st q_$b $?
done
OUT=$L/bench BUILD=build-g PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 120 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
SKIP_BUILD=1 BUILD=build-g SKIP_PROMOTE=1 SKIP_PYTEST=1 SKIP_BENCH=1 TEST_TIMEOUT=150 DEMO_TIMEOUT=30 OUT=$L/ga timeout 400 bash scripts/gpu_all.sh > $L/gpu_all.out 2>&1; st gpu_all $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
