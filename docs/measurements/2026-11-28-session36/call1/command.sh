#!/bin/bash
# Session 36 call 1 (session 35 next/command.sh as prepared), 4 GPUs (4 x H100 wanted: the issues' targets), one call (~420 s;
# guards keep it under 520). Carry build-c35/bins44.tar.xz (nl/ = main 9bb82e3's kernel,
# instruction for instruction) and build-c35/bins45.tar.xz (branch bg-wd 23baada: wd/ = version
# 5's token widening also done by warps 9-11 in the background, experts of >= 384 rows, and both
# background loops through one helper, fused_warp_rows, which also drops a source walk that
# fused_bg_requant did twice (so every non-LLK kernel differs from nl's); wd17/ = the same from
# 17 rows, tests only; session 35's call 7 measured 27a46ab, before the helper). If lost: `make CUDA=1 WERROR=1 BUILD=build-X -j16
# build-X/libdfm.so build-X/tests/test_moe build-X/bench/dfm_bench` on main and on bg-wd (wd17:
# NVCC="nvcc -DFUSED_BG_WD_ROWS=17"), strip --strip-debug, tar -cJf (dirs nl, wd, wd17).
# Session 35's call 7 (4 x H200, two rounds): dsv3-e32 T = 512 860.2 -> 807.4 us, T = 1024
# 1501.4 -> 1506.0, T = 128 level; wd's and wd17's fused suites and wd17's sequence passed.
# 1. A/B nl / wd, three rounds rotated (only the version 5 kernel differs: dsv3-e32 T >= 96).
# 2. The phase trace of both at T = 512 / 1024 (why T = 1024 gains nothing).
# 3. memcheck of wd17 (I = 640 and R = 1 FP8), the GPU pytest's FP8 kernel numerics at 4 GPUs
#    and 1000 graph replays at 4 with wd's library. Merge wd if 1 holds and 3 passes.
# 4. bench/run_bench.sh with nl: the v35 table on these cards (session 35's is on 4 x H200).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in 44 45; do tar -C /tmp/b -xJf build-c35/bins$t.tar.xz; done; st untar $?
ab_rounds 3 90 nl wd -- dsv3-e32:128,256,512,768,1024
for w in nl wd; do
  ok 110 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/$w/dfm_bench -r 4 -c dsv3-e32 -t 512,1024 \
    -w 5 -n 20 -s 0 > $L/trace_$w.txt 2>&1; st trace_$w $?; }
done
fused_memcheck wd17 "I=640" memcheck 150
fused_memcheck wd17 "fused(q=fp8,R=1," memcheck2 230
ok 310 && { DFM_LIBRARY=/tmp/b/wd/libdfm.so timeout 150 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "(replay_1000 and 4) or (numerics and kernel and 4 and fp8)" > $L/pytest.txt 2>&1; st pytest $?; }
w=nl; mkdir -p /tmp/b/$w/bench && ln -sf /tmp/b/$w/dfm_bench /tmp/b/$w/bench/dfm_bench
ok 455 && { OUT=$L/bench BUILD=/tmp/b/$w PYTHON=python3 BENCH_TIMEOUT=60 TORCH_TIMEOUT=60 timeout 60 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
