#!/bin/bash
# For the next session (NOT RUN), 4 GPUs (4 x H100 wanted: the issues' targets), one call
# (~330 s). Carry build-c36/bins48 (m36/ = main 829a545, INT8's background requantization out
# of line) and build-c36/bins49 (i8/ = the same inlined, -DFUSED_BG_RQ_INT8_INLINE=2 on branch
# i8-inline-macro f4598eb; main 3feafec's fused.o is the same SASS). If lost: build main (i8)
# and 829a545 (m36) with `make CUDA=1 WERROR=1 BUILD=build-X -j16 build-X/libdfm.so
# build-X/tests/test_moe build-X/bench/dfm_bench`, strip --strip-debug, tar -cJf.
# Session 36's call 6 measured i8 on 2 x H200 only (-G): INT8 T = 128 / 256 / 1024 -1.6 / -3.0
# / -6.6 us.
# 1. A/B m36 / i8 at R = 4, three rounds rotated, dsv3-e32-int8 (the config's prefix runs FP8 too:
#    its kernels are the same SASS) T = 32, 128, 256, 1024.
# 2. i8's fused suite at 4 and sequence, memcheck of its INT8 I = 640 cases, the GPU pytest's INT8
#    kernel numerics at 4.
# 3. bench/run_bench.sh with i8 (main's kernels): the v37 table on the cards given.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in build-c36/bins48 build-c36/bins49; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ab_rounds 3 60 m36 i8 -- dsv3-e32-int8:32,128,256,1024
fused_suite i8 110
fused_seq i8 160
fused_memcheck i8 "fused(q=int8,R=2,E=4,H=256,I=640" memcheck 220
ok 230 && { DFM_LIBRARY=/tmp/b/i8/libdfm.so timeout 80 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "numerics and kernel and 4 and int8" > $L/pytest.txt 2>&1; st pytest $?; }
bench_table i8 320
cd $OUT && tar czf n.tgz n && rm -rf n
