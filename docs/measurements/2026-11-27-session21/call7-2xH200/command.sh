#!/bin/bash
# session 21, call 7 (run as `R=2 bash command.sh` on 2 GPUs): branch tma-send (build-c-ts):
# pytest's 1000 fused graph replays with DFM_CUDA_FUSED_TMA_SEND=1 (libdfm.so of the branch), and
# a third round of TMA_SEND 0 / 1 with T = 256 added.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
B=build-c-ts
DFM_CUDA_FUSED_TMA_SEND=1 DFM_LIBRARY=$PWD/$B/libdfm.so timeout 120 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused_ts1.txt 2>&1; st pytest_fused_ts1 $?
for v in 0 1; do
  for c in qwen3-235b dsv3-e32; do
    timeout 25 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TMA_SEND=$v $B/dfm_bench -r ${R:-4} -c $c -t 1,32,128,256 -s 0 > $L/${c}_ts${v}_3.txt 2>&1; st ${c}_ts${v}_3 $?
  done
done
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
