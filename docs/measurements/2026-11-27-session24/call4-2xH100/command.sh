#!/bin/bash
# session 24, call 4 (4 x H100 wanted; R=${R:-4}). Branch combine-ll after call 3's failure (the
# fused kernel's GEMM2 epilogue is wg_consume's STAGE path; the tagged stores were only in the
# other): build-c24/bins4.tar.xz ll/ = test_moe, libdfm.so, bench/dfm_bench; main's kernels:
# build-c24/bins1.tar.xz late/dfm_bench. Steps stop starting after GUARD (230) s; files left
# in $OUT/c4 untarred (they come back even when the call is cut short).
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
G=${GUARD:-230}
ok() { [ $(( $(date +%s) - t0 )) -lt $(( ${1:-230} * G / 230 )) ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c24/bins1.tar.xz && tar -C /tmp/b -xJf build-c24/bins4.tar.xz; st untar $?
timeout 80 env DFM_CUDA_FUSED=1 /tmp/b/ll/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; rc=$?; st tm_fused $rc
[ $rc = 0 ] && DFM_LIBRARY=/tmp/b/ll/libdfm.so timeout 100 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
[ $rc = 0 ] || exit 0 # the rest needs a working build
b() { timeout 30 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2; do
  for c in qwen3-30b-bf16 dsv3-e32 qwen3-235b; do
    ok && { b /tmp/b/late/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_m.txt 2>&1; st ${c}_m_$i $?; }
    ok && { b /tmp/b/ll/bench/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_ll.txt 2>&1; st ${c}_ll_$i $?; }
  done
done
ok && { b /tmp/b/ll/bench/dfm_bench -r $R -c qwen3-30b-bf16 -t 32 -s 0 -L > $L/L_q30_ll.txt 2>&1; st L_q30_ll $?; }
ok && { timeout 70 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_COMBINE_LL=0 /tmp/b/ll/test_moe -b cuda -p threads > $L/tm_fused_ll0.txt 2>&1; st tm_fused_ll0 $?; }
ok 200 && { timeout 60 /tmp/b/ll/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?; }
[ $rc = 0 ] && ok 240 && { OUT=$L/bench BUILD=/tmp/b/ll PYTHON=python3 BENCH_TIMEOUT=60 TORCH_TIMEOUT=60 timeout 80 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
