#!/bin/bash
# Session 31 call 2, 4 x H100 (~420 s): main b05cdf0's library (build-c30/bins21 c/ = a stripped
# `make CUDA=1 WERROR=1` build of session 30's int8-keeps-mode4 + rqw-cleanup patches, now merged):
# the README's torchrun example on the 4 GPUs, then the whole GPU pytest (tests/python/test_cuda.py).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c30/bins21.tar.xz; st untar $?
timeout 60 env DFM_LIBRARY=/tmp/b/c/libdfm.so PYTHONPATH=$PWD/python python3 -m torch.distributed.run \
  --nproc_per_node=4 examples/torch_moe.py > $L/example.txt 2>&1; st example $?
cd $OUT && tar czf n.tgz n && cd - > /dev/null
DFM_LIBRARY=/tmp/b/c/libdfm.so timeout $(( 430 - ($(date +%s) - t0) )) python3 -m pytest -v -rs --durations=12 \
  tests/python/test_cuda.py > $OUT/pytest.txt 2>&1; echo "pytest rc=$? at $(( $(date +%s) - t0 )) s" >> $OUT/pytest.txt
