#!/bin/bash
# Session 27, call 4, 4 x H100 (~580 s): main 27de2c4's build (bins1 m/):
#  1. DFM_CUDA_FUSED_L2_PF (weight stages beyond the ring prefetched into L2 while a GEMM1 gate
#     is closed; default 0, last swept at v5) re-swept 0 / 8 / 16, two rounds (env only);
#  2. the whole GPU pytest (tests/python/test_cuda.py: numerics at 1/2/4 GPUs, graph replays,
#     invalid experts, peer timeout, host overhead, torch's NCCL) with the rest of the call.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz; st untar $?
for i in 1 2; do for v in 0 8 16; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 75 && { timeout 20 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_L2_PF=$v /tmp/b/m/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_p$v.txt 2>&1; st p${v}_${c}_$i $?; }
done; done; done
cd $OUT && tar czf n.tgz n && cd - > /dev/null
DFM_LIBRARY=/tmp/b/m/libdfm.so timeout $(( 585 - ($(date +%s) - t0) )) python3 -m pytest -v -rs --durations=12 \
  tests/python/test_cuda.py > $OUT/pytest.txt 2>&1; echo "pytest rc=$? at $(( $(date +%s) - t0 )) s" >> $OUT/pytest.txt
