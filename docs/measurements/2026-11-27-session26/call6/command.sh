#!/bin/bash
# Session 26 call 6, 4 x H100 (~370 s): the whole GPU pytest (22 cases, 1/2/4 GPUs, with the host-overhead
# case) on main 8d697ed's library (build-c26p/bins7.tar.xz m/libdfm.so, stripped `make CUDA=1 WERROR=1`).
source scripts/gpu_env.sh
nvidia-smi -L > $OUT/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c26p/bins7.tar.xz
DFM_LIBRARY=/tmp/b/m/libdfm.so timeout 390 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py > $OUT/pytest.txt 2>&1
echo "pytest rc=$?" >> $OUT/pytest.txt
