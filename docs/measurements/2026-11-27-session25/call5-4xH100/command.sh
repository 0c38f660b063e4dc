#!/bin/bash
# Session 25 call 5 (4 x H100, warm after call 4; run as one command line, output from the
# device tool's output_tail): dsv3-e32 (FP8 and INT8) at T = 1, 32, 128, three rounds:
# late = main before combine-ll (bins1 late/dfm_bench), cap = main 331c778, cap0 = the same
# with DFM_CUDA_FUSED_COMBINE_LL=0 (every call untagged, the non-LLK kernels).
source scripts/gpu_env.sh; mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c25/bins1.tar.xz; for i in 1 2 3; do for v in late cap cap0; do b=/tmp/b/${v%0}/dfm_bench; ll=1; [ $v = cap0 ] && ll=0; echo "## $v $i"; timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_COMBINE_LL=$ll $b -r 4 -c dsv3-e32 -t 1,32,128 -s 0 2>&1 | grep -E "^dsv3"; done; done
