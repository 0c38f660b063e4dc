#!/bin/bash
# Session 37, call 8, 2 GPUs (~70 s). Carry build-c37/bins57 (d2/ = main 25477d1's kernels).
# Session 36's INT8 background requantization inlined (3feafec) has had no memcheck: memcheck of
# the R = 2, I = 640 INT8 case (its experts reach the background line) with main's kernels.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c37/bins57.tar.xz; st untar $?
fused_memcheck d2 "fused(q=int8,R=2,E=4,H=256,I=640" memcheck_int8 10
cd $OUT && tar czf n.tgz n && rm -rf n
