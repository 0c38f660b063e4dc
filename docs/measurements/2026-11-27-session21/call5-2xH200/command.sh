#!/bin/bash
# session 21, call 5 (2 GPUs: no 4-GPU kind was lent then): the whole C suite on the v22 table's
# binaries (build-v22 = main at 0c731ec stripped), with the pipeline and with the fused kernel.
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
timeout 150 build-v22/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
timeout 150 env DFM_CUDA_FUSED=1 build-v22/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
