#!/bin/bash
# For the next session (NOT RUN), 4 x H100, one call (~500 s; the pytest under a 540 s limit).
# Carry build-c32n/bins28.tar.xz: p/ = a stripped `make CUDA=1 WERROR=1` build of main f26e625's src/
# (libdfm.so, tests/test_moe, bench/dfm_bench, dfm_demo): config.path (API 0.2) and
# dfm_ctx_get_path, which session 32 wrote after its device time was spent.
# The whole GPU pytest (31 cases): fused_numerics now picks its path by Buffer(path=...) with
# DFM_CUDA_FUSED saying the opposite, and each rank asserts buf.path_taken; then the torchrun example.
source scripts/gpu_env.sh
t0=$(date +%s)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins28.tar.xz
nvidia-smi -L > $OUT/smi.txt
DFM_LIBRARY=/tmp/b/p/libdfm.so timeout 540 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  > $OUT/pytest.txt 2>&1; echo "pytest rc=$? at $(( $(date +%s) - t0 )) s" >> $OUT/pytest.txt
[ $(( $(date +%s) - t0 )) -lt 560 ] && DFM_LIBRARY=/tmp/b/p/libdfm.so PYTHONPATH=python timeout 30 \
  python3 -m torch.distributed.run --nproc_per_node=4 examples/torch_moe.py > $OUT/example.txt 2>&1
echo "example rc=$?" >> $OUT/example.txt
