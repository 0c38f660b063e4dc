#!/bin/bash
# Session 31 call 7, 4 x H100 (~160 s; the pytest under a 200 s limit): main's library with the
# fused kernel the default (build-c31b/bins23 f/, as call 5): the 4-GPU GPU pytest cases that take
# the default path, which call 5's 2 x H100 skipped (fused_numerics[4-*-kernel],
# graph_capture_replay[4]).
source scripts/gpu_env.sh
t0=$(date +%s)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c31b/bins23.tar.xz
nvidia-smi -L > $OUT/smi.txt
DFM_LIBRARY=/tmp/b/f/libdfm.so timeout 200 python3 -m pytest -v -rs --durations=6 \
  -k "4-fp8-kernel or 4-int8-kernel or 4-bf16-kernel or (graph_capture_replay and 4)" \
  tests/python/test_cuda.py > $OUT/pytest.txt 2>&1; echo "pytest rc=$? at $(( $(date +%s) - t0 )) s" >> $OUT/pytest.txt
