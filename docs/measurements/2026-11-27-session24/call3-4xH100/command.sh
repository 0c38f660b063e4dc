#!/bin/bash
# session 24, call 3 (4 x H100 wanted; R=${R:-4}). Branch combine-ll (tagged combine rows,
# FUSED_COMBINE_LL 1, ML = DFM_COMBINE_LL_TOKENS 64): build-c24/bins3.tar.xz ll/ = test_moe,
# libdfm.so, bench/dfm_bench; ll128/dfm_bench = the same built with -DDFM_COMBINE_LL_TOKENS=128
# (gcc and nvcc). main's kernels: build-c24/bins1.tar.xz late/dfm_bench.
# 1. the C suite with the fused kernel (tagged; and DFM_CUDA_FUSED_COMBINE_LL=0: flags), pytest's
#    1000 fused graph replays at 2 and 4 GPUs; 2. A/B three rounds m / ll / ll128, T = 1, 32, 128;
#    -L; 3. run_bench on ll; 4. memcheck of the fused R = 2 BF16 cases, the pipeline's C suite.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c24/bins1.tar.xz && tar -C /tmp/b -xJf build-c24/bins3.tar.xz; st untar $?
timeout 90 env DFM_CUDA_FUSED=1 /tmp/b/ll/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
timeout 90 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_COMBINE_LL=0 /tmp/b/ll/test_moe -b cuda -p threads > $L/tm_fused_ll0.txt 2>&1; st tm_fused_ll0 $?
DFM_LIBRARY=/tmp/b/ll/libdfm.so timeout 100 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
b() { timeout 40 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in qwen3-30b-bf16 dsv3-e32 qwen3-235b; do
    b /tmp/b/late/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_m_$i.txt 2>&1; st ${c}_m_$i $?
    b /tmp/b/ll/bench/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_ll_$i.txt 2>&1; st ${c}_ll_$i $?
    b /tmp/b/ll128/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_ll128_$i.txt 2>&1; st ${c}_ll128_$i $?
  done
done
for c in qwen3-30b-bf16 dsv3-e32; do
  b /tmp/b/late/dfm_bench -r $R -c $c -t 32 -s 0 -L > $L/L_${c}_m.txt 2>&1; st L_${c}_m $?
  b /tmp/b/ll/bench/dfm_bench -r $R -c $c -t 32 -s 0 -L > $L/L_${c}_ll.txt 2>&1; st L_${c}_ll $?
done
OUT=$L/bench BUILD=/tmp/b/ll PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 170 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 /tmp/b/ll/test_moe -b cuda -p threads -o "fused(q=bf16,R=2," > $L/memcheck_fused_bf16.txt 2>&1; st memcheck_fused_bf16 $?
timeout 90 /tmp/b/ll/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
