#!/bin/bash
# Session 25 call 1: combine-ll.patch (the LLK form) on 4 x H100, R=${R:-4}.
# build-c24/bins5.tar.xz (if this machine still has it; else rebuild, see below):
#   llk/test_moe, llk/libdfm.so, llk/bench/dfm_bench  = main 88c2c1e's code + combine-ll.patch
#   llk8/dfm_bench, llk128/dfm_bench = the same with CC="gcc -DDFM_COMBINE_LL_TOKENS=8|128"
#   NVCC="nvcc -DDFM_COMBINE_LL_TOKENS=8|128" (the layout is computed by api.c: both compilers)
# build-c24/bins1.tar.xz late/dfm_bench = main's kernels (spec-late), the A/B's baseline.
# Results are tarred (a call returns at most 8 files); steps stop starting after GUARD s.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/v; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-480} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c24/bins1.tar.xz && tar -C /tmp/b -xJf build-c24/bins5.tar.xz; st untar $?
timeout 90 env DFM_CUDA_FUSED=1 /tmp/b/llk/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; rc=$?; st tm_fused $rc
if [ $rc = 0 ]; then
  timeout 90 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_COMBINE_LL=0 /tmp/b/llk/test_moe -b cuda -p threads > $L/tm_fused_ll0.txt 2>&1; st tm_fused_ll0 $?
  timeout 90 /tmp/b/llk/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
  timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 /tmp/b/llk/test_moe -b cuda -p threads -o "fused(q=bf16,R=2," > $L/memcheck.txt 2>&1; st memcheck $?
  DFM_LIBRARY=/tmp/b/llk/libdfm.so timeout 120 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
  b() { timeout 30 env DFM_CUDA_FUSED=1 "$@"; }
  for i in 1 2 3; do
    for c in qwen3-30b-bf16 dsv3-e32 qwen3-235b; do
      ok && { b /tmp/b/late/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_m.txt 2>&1; st ${c}_m_$i $?; }
      ok && { b /tmp/b/llk/bench/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_llk.txt 2>&1; st ${c}_llk_$i $?; }
      ok && { b /tmp/b/llk8/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_llk8.txt 2>&1; st ${c}_llk8_$i $?; }
      ok && { b /tmp/b/llk128/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_llk128.txt 2>&1; st ${c}_llk128_$i $?; }
    done
  done
fi
cd $OUT && tar czf v.tgz v && rm -rf v
