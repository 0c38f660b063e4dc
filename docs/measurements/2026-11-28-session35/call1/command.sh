#!/bin/bash
# Session 35 call 1 (session 34's next/command.sh as prepared), 4 GPUs (4 x H100 wanted: the issues' targets), one call (~200 s;
# guards keep it under 400). Carry build-c34/bins37.tar.xz (m34/ = main f95d565's src, = main
# 6478f12's kernel) and build-c34/bins40.tar.xz (bit2/ = branch rq-ahead-bit2 b30d05d).
# If lost: `make CUDA=1 WERROR=1 BUILD=build-X -j16 build-X/libdfm.so build-X/tests/test_moe
# build-X/bench/dfm_bench` on main and on rq-ahead-bit2, strip --strip-debug, tar -cJf (dirs m34,
# bit2).
# 1. A/B m34 / bit2, five rounds rotated (call_env.sh's ab_rounds): session 34's call 7 (4 x H200) read T = 1024 -10.8 / -18.0
#    (FP8 / INT8) but dsv3-e32 T = 32 +1.2 us; merge bit2 only if T = 32 is level here.
# 2. bench/run_bench.sh with m34: the v34 table on these cards (session 34's is on 4 x H200).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c34/bins37.tar.xz && tar -C /tmp/b -xJf build-c34/bins40.tar.xz; st untar $?
ab_rounds 5 150 m34 bit2 -- dsv3-e32:1,32,128,768,1024 qwen3-235b:1,32,128
w=m34; mkdir -p /tmp/b/$w/bench && ln -sf /tmp/b/$w/dfm_bench /tmp/b/$w/bench/dfm_bench
ok 250 && { OUT=$L/bench BUILD=/tmp/b/$w PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 140 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
