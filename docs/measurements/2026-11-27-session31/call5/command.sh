#!/bin/bash
# Session 31 call 5, 4 x H100 (or 2: the 4-rank cases skip) (~350 s; guards keep it under 480). Carry build-c31b/bins23.tar.xz:
# f/ = a stripped `make CUDA=1 WERROR=1` build of branch fused-default (main b05cdf0's kernels; the
# one-kernel operator is the library's default, DFM_CUDA_FUSED=0 the pipeline). What the new
# default changes: 1. test_moe with the default as process ranks (R = 2, 4) and a pipeline
# check with DFM_CUDA_FUSED=0; 2. the README's torchrun example; 3. the GPU pytest cases that
# now take the fused kernel by default (fused_numerics[*-kernel], graph_capture_replay,
# invalid_experts, peer_timeout, host_overhead). The pipeline cases and the explicit fused
# 1000-replay ran (and passed) in call 2, the same kernels under the old default.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c31b/bins23.tar.xz; st untar $?
unset DFM_CUDA_FUSED
for r in 2 4; do
  ok 100 && { timeout 60 /tmp/b/f/test_moe -b cuda -p procs -o "R=$r," > $L/procs_R$r.txt 2>&1; st procs_R$r $?; }
done
ok 130 && { DFM_CUDA_FUSED=0 timeout 40 /tmp/b/f/test_moe -b cuda -p threads -o "R=2," > $L/pipeline_R2.txt 2>&1; st pipeline_R2 $?; }
ok 160 && { timeout 60 env DFM_LIBRARY=/tmp/b/f/libdfm.so PYTHONPATH=$PWD/python python3 -m torch.distributed.run \
  --nproc_per_node=$(nvidia-smi -L | wc -l) examples/torch_moe.py > $L/example.txt 2>&1; st example $?; }
cd $OUT && tar czf n.tgz n && cd - > /dev/null
DFM_LIBRARY=/tmp/b/f/libdfm.so timeout $(( 470 - ($(date +%s) - t0) )) python3 -m pytest -v -rs --durations=12 \
  -k "kernel or graph_capture_replay or invalid_experts or peer_timeout or host_overhead" \
  --deselect "tests/python/test_cuda.py::test_cuda_fused_kernel_graph_replay_1000" \
  tests/python/test_cuda.py > $OUT/pytest.txt 2>&1; echo "pytest rc=$? at $(( $(date +%s) - t0 )) s" >> $OUT/pytest.txt
