#!/bin/bash
# session 23, meant as call 7 but NOT RUN (too little device time was left to start a machine): main + spec-late with FUSED_SPEC_PF_LATE 1 by default
# (build-c23/bins7.tar.xz: test_moe and libdfm.so of `make CUDA=1 WERROR=1 BUILD=build-late2`;
# fused.o's SASS identical to call 6's late build): the C suite with the fused kernel and
# pytest's 1000 fused graph replays at 2 and 4 GPUs.
source scripts/gpu_env.sh
L=$OUT/c7; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c23/bins7.tar.xz; st untar $?
timeout 90 env DFM_CUDA_FUSED=1 /tmp/b/late2/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
DFM_LIBRARY=/tmp/b/late2/libdfm.so timeout 100 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused.txt 2>&1; st pytest_fused $?
cd $OUT && tar czf c7.tgz c7 && rm -rf c7
