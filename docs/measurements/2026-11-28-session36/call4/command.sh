#!/bin/bash
# Session 36 call 4, 4 GPUs, ~250 s. Carry build-c36/bins48: m36/ = main 829a545 (background
# widening from expert 1, a row a claim, experts of >= 384 rows; its fused.o is call 3's w1c1's,
# cuobjdump), r96/ and r192/ = the same with -DFUSED_BG_WD_ROWS=96 / 192 (the background widening
# also at T = 128 / 256, where experts have ~T rows).
# 1. A/B m36 / r96 / r192, three rounds rotated, dsv3-e32 (and -int8) T = 128, 256, 512; P = the
#    best by mean ratio to m36 if under 0.995, else m36.
# 2. P's fused suite and sequence; the phase trace of m36 and r96 at T = 128 / 256; the GPU
#    pytest's 1000 replays at 4 with m36.
# 3. bench/run_bench.sh with P if P is not m36.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c36/bins48.tar.xz; st untar $?
ab_rounds 3 60 m36 r96 r192 -- dsv3-e32:128,256,512
P=$(python3 scripts/ab_means.py -b m36:0.995 $L m36 r96 r192 2> $L/pick.txt); echo "pick $P" >> $L/pick.txt
fused_suite $P 100
fused_seq $P 150
for w in m36 r96; do
  ok 140 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/$w/dfm_bench -r 4 -c dsv3-e32 -t 128,256 \
    -w 5 -n 20 -s 0 > $L/trace_$w.txt 2>&1; st trace_$w $?; }
done
ok 150 && { DFM_LIBRARY=/tmp/b/m36/libdfm.so timeout 110 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "replay_1000 and 4" > $L/pytest.txt 2>&1; st pytest $?; }
if [ "$P" != m36 ]; then
  mkdir -p /tmp/b/$P/bench && ln -sf /tmp/b/$P/dfm_bench /tmp/b/$P/bench/dfm_bench
  ok 270 && { OUT=$L/bench BUILD=/tmp/b/$P PYTHON=python3 BENCH_TIMEOUT=60 TORCH_TIMEOUT=60 timeout 60 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
fi
cd $OUT && tar czf n.tgz n && rm -rf n
