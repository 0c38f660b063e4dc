#!/bin/bash
# session 21, call 2 (4 x H100): main at the v22 code (build-v22 = `make CUDA=1 WERROR=1
# BUILD=build-m21 all` stripped: reduce-warm by default, g2-rows16): the whole benchmark
# (bench/run_bench.sh: table v22 and plot), the Python GPU test of the fused kernel (1000 graph
# replays at 2 and 4 GPUs) on its libdfm.so, memcheck of the fused R = 2 FP8 cases; then the
# send's parts a token at T = 1 (DFM_CUDA_FUSED_PARTS, two rounds) and the item traces of
# qwen3-235b and dsv3-e32 at T = 128.
source scripts/gpu_env.sh
L=$OUT/c2; mkdir -p $L/items
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
B=build-v22
OUT=$L/bench BUILD=$B PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 150 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
DFM_LIBRARY=$PWD/$B/libdfm.so timeout 200 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
timeout 100 env DFM_TEST_TIMEOUT_S=90 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
for i in 1 2; do
  for p in 8 16 32; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_PARTS=$p $B/bench/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 > $L/qwen3-235b_parts${p}_$i.txt 2>&1; st qwen3-235b_parts${p}_$i $?
  done
  for p in 14 28 56; do
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_PARTS=$p $B/bench/dfm_bench -r 4 -c dsv3-e32 -t 1 -s 0 > $L/dsv3-e32_parts${p}_$i.txt 2>&1; st dsv3-e32_parts${p}_$i $?
  done
done
for c in qwen3-235b dsv3-e32; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/main $B/bench/dfm_bench -r 4 -c $c -t 128 -s 0 -w 5 -n 20 > $L/trace_${c}_T128.txt 2>&1; st trace_${c} $?
done
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
