#!/bin/bash
# Session 32 call 1, 4 x H100 (~400 s; guards keep it under 560): main 6f70711's library (the
# fused kernel the default), carried as build-c32/bins24.tar.xz (m/: a stripped `make CUDA=1
# WERROR=1 all` build: libdfm.so, tests/test_moe, dfm_demo, bench/).
# 1. The 4-GPU GPU pytest cases that take the default path (session 31 ran them at 1-2 GPUs only):
#    fused_numerics[4-*-kernel] and graph_capture_replay[4].
# 2. scripts/gpu_all.sh's groups not yet run on a device since the default changed: the whole
#    test_moe with the pipeline (DFM_CUDA_FUSED=0) and without the cached graph, the sanitizers
#    (memcheck and racecheck of the pipeline, memcheck of the fused default), and the demo on 4 GPUs.
source scripts/gpu_env.sh
t0=$(date +%s)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32/bins24.tar.xz
nvidia-smi -L > $OUT/smi.txt
DFM_LIBRARY=/tmp/b/m/libdfm.so timeout 220 python3 -m pytest -v -rs --durations=6 \
  -k "4-fp8-kernel or 4-int8-kernel or 4-bf16-kernel or (graph_capture_replay and 4)" \
  tests/python/test_cuda.py > $OUT/pytest.txt 2>&1; echo "pytest rc=$? at $(( $(date +%s) - t0 )) s" >> $OUT/pytest.txt
left=$(( 560 - ($(date +%s) - t0) ))
OUT=$OUT/ga SKIP_BUILD=1 BUILD=/tmp/b/m SKIP_TESTS=1 SKIP_PYTEST=1 SKIP_BENCH=1 SKIP_PROMOTE=1 \
  SKIP_TOK16=1 TEST_TIMEOUT=150 DEMO_TIMEOUT=60 timeout $left bash scripts/gpu_all.sh > $OUT/gpu_all_stdout.txt 2>&1
echo "gpu_all rc=$? at $(( $(date +%s) - t0 )) s" >> $OUT/gpu_all_stdout.txt
cd $OUT && tar czf ga.tgz ga && rm -rf ga
