#!/bin/bash
# session 22, call 5 (4 x H100 wanted): main at 0d1ebbf (build-v23 = `make CUDA=1 WERROR=1
# BUILD=build-m22 all` stripped: reduce-ids and the send's first slots by shuffles): the whole
# benchmark (bench/run_bench.sh: table v23 and plot), the C suite with the fused kernel and with
# the pipeline, the Python GPU test of the fused kernel (1000 graph replays at 2 and 4 GPUs),
# memcheck of the fused R = 2 FP8 cases.
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
B=build-v23
OUT=$L/bench BUILD=$B PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 170 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
timeout 100 env DFM_CUDA_FUSED=1 $B/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 $B/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
DFM_LIBRARY=$PWD/$B/libdfm.so timeout 150 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
