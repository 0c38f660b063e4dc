#!/bin/bash
# Session 35, call 5, 4 GPUs (~400 s; guards keep it under 420: the budget's last call). Carry
# build-c35/bins41.tar.xz (m35/ = main 068d7ee), build-c35/bins43.tar.xz (f384/: call 4's
# background requantization in every kernel) and build-c35/bins44.tar.xz (nl/ = branch bg-rq
# 6080a20: the same but not in the LLK kernels, which run at T <= ll_tokens; those are main's
# instruction for instruction, cuobjdump; call 4's f384 read +2.8 at qwen3-235b T = 1, an LLK row).
# 1. A/B m35 / f384 / nl (DFM_CUDA_FUSED=1), three rounds rotated.
# 2. nl's fused C suite and 1000-call sequence; bench/run_bench.sh with nl (the v35 table);
#    the GPU pytest's kernel numerics at 4 GPUs and 1000 graph replays at 4, with nl's library.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in 41 43 44; do tar -C /tmp/b -xJf build-c35/bins$t.tar.xz; done; st untar $?
ab_rounds 3 100 m35 f384 nl -- dsv3-e32:1,32,128,512,1024 qwen3-235b:1,32,128 qwen3-30b-bf16:32,128
w=nl; C="/tmp/b/$w/test_moe -b cuda -p threads"
ok 150 && { timeout 70 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?; }
ok 215 && { timeout 25 $C -o sequence -c 1000 > $L/${w}_seq1000.txt 2>&1; st ${w}_seq1000 $?; }
mkdir -p /tmp/b/$w/bench && ln -sf /tmp/b/$w/dfm_bench /tmp/b/$w/bench/dfm_bench
ok 230 && { OUT=$L/bench BUILD=/tmp/b/$w PYTHON=python3 BENCH_TIMEOUT=60 TORCH_TIMEOUT=60 timeout 80 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
left=$(( 410 - $(date +%s) + t0 ))
[ $left -gt 60 ] && { DFM_LIBRARY=/tmp/b/$w/libdfm.so timeout $left python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "(replay_1000 and 4) or (numerics and kernel and 4)" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
