#!/bin/bash
# session 24, call 1 (4 x H100 wanted; R=${R:-4}).
# Validation of spec-late (build-c23/bins7.tar.xz: late2/test_moe, late2/libdfm.so = main + the
# session 23 patch branches/spec-late.patch, FUSED_SPEC_PF_LATE 1): the C suite with the fused
# kernel, pytest's 1000 fused graph replays at 2 and 4 GPUs.
# A/B, three rounds, fused layer: m = build-v24 (main's kernels), late = spec-late, x1 / x2 =
# spec-late + branches/x-pf.patch built with -DFUSED_X_PF=1 (L2) / 2 (L1) (build-c24/bins1.tar.xz).
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c1; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c23/bins7.tar.xz && tar -C /tmp/b -xJf build-c24/bins1.tar.xz; st untar $?
timeout 90 env DFM_CUDA_FUSED=1 /tmp/b/late2/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
DFM_LIBRARY=/tmp/b/late2/libdfm.so timeout 100 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
b() { timeout 40 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in qwen3-30b-bf16 dsv3-e32 qwen3-235b; do
    b build-v24/bench/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_m_$i.txt 2>&1; st ${c}_m_$i $?
    for v in late x1 x2; do
      b /tmp/b/$v/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_${v}_$i.txt 2>&1; st ${c}_${v}_$i $?
    done
  done
done
for v in late x1; do b /tmp/b/$v/dfm_bench -r $R -c qwen3-30b-bf16 -t 32 -s 0 -L > $L/q30L_$v.txt 2>&1; st q30L_$v $?; done
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
