# Session 37, call 7, 4 GPUs only (~540 s). Carry build-c37/bins51 (m/ = main 6c7509e) and bins57
# (d2/ = main 25477d1's kernels, SASS checked: send-dedup merged). Call 6 ran d2's tests at 2.
# If the binaries are lost: build main (d2) and 6c7509e (m) with `make CUDA=1 WERROR=1
# BUILD=build-X -j16 build-X/libdfm.so build-X/tests/test_moe build-X/bench/dfm_bench`, strip
# --strip-debug, tar -C <dir> -cJf build-c37/binsNN.tar.xz <name>.
# 1. d2's tests at 4: the whole C suite, the fused suite with every FP8 call on version 5, the
#    1000-call sequence with ranks choosing version 5 differently, memcheck of the R = 4, K = 16
#    FP8 case on version 5 (the route's K > 8 form, a token's 16 slots over 4 ranks).
# 2. bench/run_bench.sh with d2: the v37 table.
# 3. The GPU pytest's FP8 kernel numerics and the 1000 graph replays at 4, every FP8 call on version 5.
# 4. A/B m / d2, two rounds rotated: dsv3-e32 T = 1 .. 1024 (+ INT8), qwen3-235b T = 1 / 32 /
#    128 / 1024.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l); [ "$r" -lt 4 ] && { echo "needs 4 GPUs" > $L/skipped.txt; cd $OUT && tar czf n.tgz n; exit 0; }
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins57; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
suite_all d2 30
v5_suite d2 150
seq_mixed d2 210
DFM_CUDA_TOK16_ROWS=0 fused_memcheck d2 "fused(q=fp8,R=4,E=16,H=256,I=64,K=16" memcheck 230
bench_table d2 290
ok 330 && { DFM_CUDA_TOK16_ROWS=0 DFM_LIBRARY=/tmp/b/d2/libdfm.so timeout 170 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "(numerics and kernel and 4 and fp8) or (replay_1000 and 4)" > $L/pytest.txt 2>&1; st pytest $?; }
ab_rounds 2 530 m d2 -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32,128,1024
cd $OUT && tar czf n.tgz n && rm -rf n
