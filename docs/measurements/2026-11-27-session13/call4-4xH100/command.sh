#!/bin/bash
# session 13, call 4 (4 x H100): A/B main vs s13a, host_cost A/B, rest of GPU pytest, GEMM table, bench v15
source scripts/gpu_env.sh
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
for i in 1 2; do for b in build-m build-c3; do
  timeout 60 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/pipe_${b}_$i.txt 2>&1; st pipe_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/fused_${b}_$i.txt 2>&1; st fused_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 > $L/fusedq_${b}_$i.txt 2>&1; st fusedq_${b}_$i $?
done; done
for i in 1 2; do for b in build-m build-c3; do
  timeout 60 $b/bench/host_cost >> $L/host_cost_${b}.txt 2>&1; st hc_${b}_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 $b/bench/host_cost >> $L/host_cost_fused_${b}.txt 2>&1; st hcf_${b}_$i $?
done; done
DFM_LIBRARY=$PWD/build-c3/libdfm.so timeout 260 python3 -m pytest -v -rs -s --durations=10 -k "graph_capture_replay or replay_1000 or invalid_experts or peer_timeout or host_overhead or nccl_is_torchs" tests/python/test_cuda.py > $L/pytest_rest.log 2>&1; st pytest_rest $?
CUDA_VISIBLE_DEVICES=0 timeout 90 build-c3/bench/gemm_bench -q -v 3l -o $L/gemm.csv > $L/gemm.txt 2>&1; st gemm $?
rem=$((565 - ($(date +%s) - t0))); echo "bench budget $rem s" >> $L/steps.txt
OUT=$L/bench BUILD=build-c3 PYTHON=python3 BENCH_TIMEOUT=200 TORCH_TIMEOUT=150 timeout $rem bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
