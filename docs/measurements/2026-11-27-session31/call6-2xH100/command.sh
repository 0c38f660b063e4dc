#!/bin/bash
# Session 31 call 6, 2 x H100 (the machine of call 5, warm; 7 s): host_cost (1 GPU) of branch
# fused-default's build (build-c31b/bins23 f/), the pipeline (DFM_CUDA_FUSED=0) against the fused
# kernel (=1), two rounds. Run inline as:
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c31b/bins23.tar.xz; source scripts/gpu_env.sh; for i in 1 2; do for f in 0 1; do echo "== DFM_CUDA_FUSED=$f round $i"; DFM_CUDA_FUSED=$f timeout 40 /tmp/b/f/host_cost; done; done 2>&1 | tee $OUT/host_cost.txt | grep -E "==|dfm_fused_moe|graph"
