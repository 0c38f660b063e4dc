#!/bin/bash
# Session 33, call 5, 4 x H100 (~60 s). Carry build-c32n/bins27.tar.xz (v24/).
# Call 4: at one rank and T = 1024 the kernel is within 2.5 % of the pipeline (INT8 1450 / 1418 us),
# so the 13 % gap of 4 ranks is in the multi-rank schedule. The kernel's own trace
# (DFM_CUDA_FUSED_TRACE=1: per-CTA phase stamps of the last call) at 4 ranks, T = 256 and 1024,
# INT8 and FP8; the pipeline's timings beside them.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz; st untar $?
B=/tmp/b/v24/dfm_bench
DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 timeout 60 $B -r 4 -c dsv3-e32 -t 256,1024 -s 0 > $L/trace.txt 2>&1; st trace $?
DFM_CUDA_FUSED=0 timeout 40 $B -r 4 -c dsv3-e32 -t 256,1024 -s 0 > $L/pipeline.txt 2>&1; st pipeline $?
cd $OUT && tar czf n.tgz n && rm -rf n
