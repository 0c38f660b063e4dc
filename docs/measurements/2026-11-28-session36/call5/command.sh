#!/bin/bash
# Session 36 call 5, 4 GPUs, ~150 s (the budget's rest). Carry build-c35/bins44 (nl/ = main
# 9bb82e3's kernel) and build-c36/bins48 (m36/ = main 829a545). Only the version 5 kernel's
# algorithm changed, but the shared helper (fused_warp_rows) changed the SASS of every non-LLK
# kernel: the decode and BF16 rows nl / m36, three rounds rotated; the GPU pytest's INT8 and
# BF16 kernel numerics at 4 with m36 (FP8's passed in call 3 with the same fused.o).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in build-c35/bins44 build-c36/bins48; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ab_rounds 3 60 nl m36 -- dsv3-e32:1,32 qwen3-235b:1,32,128 qwen3-30b-bf16:32,128
ok 90 && { DFM_LIBRARY=/tmp/b/m36/libdfm.so timeout 100 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "numerics and kernel and 4 and (int8 or bf16)" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
