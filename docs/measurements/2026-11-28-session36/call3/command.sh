#!/bin/bash
# Session 36 call 3, 4 GPUs, ~380 s. Carry build-c35/bins44 (nl/ = main 9bb82e3's kernel),
# build-c36/bins46 (wd1/ = bg-wd d7d6a5c with -DFUSED_BG_WD_FIRST=1) and build-c36/bins47 (the
# same source: w1c1/ = FIRST=1 CLAIM=1, w1c2/ = FIRST=1 CLAIM=2, w2/ = FIRST=2 CLAIM=4; t17/ =
# FIRST=1 CLAIM=1 from 17 rows, tests only). Call 2: wd1 and wc1 (CLAIM=1) each took dsv3-e32
# T = 512 / 1024 from 853.6 / 1520.1 to ~785 / ~1492.
# 1. A/B nl / wd1 / w1c1 / w1c2 / w2, three rounds rotated; the best by mean ratio to nl (P).
# 2. P's fused suite and 1000-call sequence; t17's fused suite and memcheck (I = 640, R = 1 FP8).
# 3. bench/run_bench.sh with P (the v36 table), then the GPU pytest's FP8 kernel numerics with P.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in build-c35/bins44 build-c36/bins46 build-c36/bins47; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ab_rounds 3 90 nl wd1 w1c1 w1c2 w2 -- dsv3-e32:128,512,768,1024
P=$(python3 scripts/ab_means.py -b nl $L nl wd1 w1c1 w1c2 w2 2> $L/pick.txt); echo "pick $P" >> $L/pick.txt
fused_suite $P 110
fused_seq $P 160
fused_suite t17 170
fused_memcheck t17 "I=640" memcheck 220
fused_memcheck t17 "fused(q=fp8,R=1," memcheck2 290
mkdir -p /tmp/b/$P/bench && ln -sf /tmp/b/$P/dfm_bench /tmp/b/$P/bench/dfm_bench
ok 330 && { OUT=$L/bench BUILD=/tmp/b/$P PYTHON=python3 BENCH_TIMEOUT=60 TORCH_TIMEOUT=60 timeout 60 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
ok 400 && { DFM_LIBRARY=/tmp/b/$P/libdfm.so timeout 120 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "numerics and kernel and 4 and fp8" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
