#!/bin/bash
# Session 36 call 6, 2 GPUs (no 4-GPU kind was lent then; -G keeps G = 8 experts a rank, as
# at R = 4), the budget's rest (~240 s, start included). Carry build-c36/bins48
# (m36/ = main 829a545) and build-c36/bins49 (i8/ = branch i8-inline: INT8's background
# requantization inlined with 2 float4 a lane, -DFUSED_BG_RQ_INT8_INLINE=2; after
# fused_warp_rows it compiles without spills, ptxas -v). Session 35: the out-of-line call cost
# INT8 T = 128 +1.7 us, where no expert reaches its 256 rows.
# 1. A/B m36 / i8, three rounds rotated, dsv3-e32-int8 T = 32, 128, 256, 1024 (INT8 kernels only
#    differ).
# 2. i8's fused suite.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in build-c36/bins48 build-c36/bins49; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
AB_ARGS=-G ab_rounds 3 40 m36 i8 -- dsv3-e32-int8:32,128,256,1024
fused_suite i8 60
cd $OUT && tar czf n.tgz n && rm -rf n
