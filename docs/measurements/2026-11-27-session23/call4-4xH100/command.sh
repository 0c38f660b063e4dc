#!/bin/bash
# session 23, call 4 (4 x H100 wanted; R=${R:-4}): m = main's v23 build (build-c23/bins4.tar.xz),
# build-v24 = branch bf16-noamax (`make CUDA=1 WERROR=1 BUILD=build-bf all`, stripped: the fused
# kernel's BF16 send and the requantization without an amax; FP8 / INT8 fused kernels
# SASS-identical to main's).
# 1. A/B, three rounds: m / bf at qwen3-30b-bf16 T = 1,32,128 (and its -L at T = 32).
# 2. bench/run_bench.sh with build-v24 (the table candidate v24).
# 3. bf: the C suite with the fused kernel and with the pipeline, memcheck of the fused R = 2 BF16
#    cases, pytest's 1000 graph replays (2 and 4 GPUs).
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c23/bins4.tar.xz; st untar $?
B=build-v24
b() { timeout 40 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  b /tmp/b/m/dfm_bench -r $R -c qwen3-30b-bf16 -t 1,32,128 -s 0 > $L/q30_m_$i.txt 2>&1; st q30_m_$i $?
  b $B/bench/dfm_bench -r $R -c qwen3-30b-bf16 -t 1,32,128 -s 0 > $L/q30_bf_$i.txt 2>&1; st q30_bf_$i $?
done
for v in m bf; do
  bin=/tmp/b/m/dfm_bench; [ $v = bf ] && bin=$B/bench/dfm_bench
  b $bin -r $R -c qwen3-30b-bf16 -t 32 -s 0 -L > $L/q30_${v}L.txt 2>&1; st q30_${v}L $?
done
OUT=$L/bench BUILD=$B PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 170 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
timeout 100 env DFM_CUDA_FUSED=1 $B/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 100 $B/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/test_moe -b cuda -p threads -o "fused(q=bf16,R=2," > $L/memcheck_fused_bf16.txt 2>&1; st memcheck_fused_bf16 $?
DFM_LIBRARY=$PWD/$B/libdfm.so timeout 150 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
