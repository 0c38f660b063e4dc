#!/bin/bash
# Session 36 call 2, 4 GPUs (or 2: the GPU count; ~350 s). On 2, dfm_bench -G keeps G = 8
# experts a rank (dsv3-e32@E16: T rows an expert, as at R = 4), so the per-rank work of call 1's
# rows repeats on two ranks (on 4, -G changes nothing). Carry build-c35/bins44 (nl/ = main 9bb82e3's kernel),
# bins45 (wd/ = bg-wd 23baada) and build-c36/bins46 (bg-wd d7d6a5c: wd1/ = -DFUSED_BG_WD_FIRST=1,
# expert 0 left to the consumers (call 1's trace: wd's first GEMM1 gate opened 37 us later);
# wdm/ = -DFUSED_BG_WD_MAX=960, experts of >= 960 rows not in the background; wc1/ =
# -DFUSED_BG_WD_CLAIM=1).
# 1. A/B nl / wd / wd1 / wdm / wc1, three rounds rotated, dsv3-e32 (and -int8) T = 128 .. 1024.
# 2. Traces of nl / wd / wd1 at T = 512 / 1024.
# 3. wd's fused suite, 1000-call sequence, the GPU pytest's FP8 kernel numerics and 1000 replays
#    at the GPU count (session 35 ran 27a46ab's suites; call 1 wd17's memcheck and the pytest numerics at 4).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
n=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && for t in build-c35/bins44 build-c35/bins45 build-c36/bins46; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
AB_ARGS=-G ab_rounds 3 130 nl wd wd1 wdm wc1 -- dsv3-e32:128,512,768,1024
for w in nl wd wd1; do
  ok 160 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/$w/dfm_bench -r $n -G -c dsv3-e32 -t 512,1024 \
    -w 5 -n 20 -s 0 > $L/trace_$w.txt 2>&1; st trace_$w $?; }
done
fused_suite wd 180
fused_seq wd 250
ok 280 && { DFM_LIBRARY=/tmp/b/wd/libdfm.so timeout 220 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "(replay_1000 and $n) or (numerics and kernel and $n and fp8)" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
