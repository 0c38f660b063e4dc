#!/bin/bash
# Session 35, call 4, 4 GPUs (~420 s; guards keep it under 590). Carry build-c35/bins41.tar.xz
# (m35/ = main 068d7ee), build-c35/bins42.tar.xz (i256/: call 3's INT8-only background
# requantization) and build-c35/bins43.tar.xz, from branch bg-rq 1ddae16:
#   f384/ background requantization in every mode: INT8 out of line from 256 rows, FP8 / BF16
#         inlined (1 float4 a lane; call 3's a256 called it out of line and read +5.1 at
#         qwen3-235b T = 1, where no expert reaches it) from 384 rows (a256 lost 15 at T = 256);
#   f512/ the same, FP8 / BF16 from 512 rows;
#   t17b/ every mode from 17 rows (tests only).
# 1. A/B m35 / i256 / f384 / f512 (DFM_CUDA_FUSED=1), three rounds rotated.
# 2. t17b's and f384's fused C suites, t17b's 1000-call sequence and memcheck (I = 640 cases).
# 3. bench/run_bench.sh with f384: the v35 table if f384 is merged.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in 41 42 43; do tar -C /tmp/b -xJf build-c35/bins$t.tar.xz; done; st untar $?
ab_rounds 3 200 m35 i256 f384 f512 -- dsv3-e32:1,32,128,256,512,768,1024 qwen3-235b:1,32,128 qwen3-30b-bf16:32,128
for w in t17b f384; do C="/tmp/b/$w/test_moe -b cuda -p threads"
  ok 320 && { timeout 70 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?; }
done
C="/tmp/b/t17b/test_moe -b cuda -p threads"
ok 390 && { timeout 25 $C -o sequence -c 1000 > $L/t17b_seq1000.txt 2>&1; st t17b_seq1000 $?; }
ok 400 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "I=640" > $L/t17b_memcheck.txt 2>&1; st t17b_memcheck $?; }
w=f384; mkdir -p /tmp/b/$w/bench && ln -sf /tmp/b/$w/dfm_bench /tmp/b/$w/bench/dfm_bench
ok 480 && { OUT=$L/bench BUILD=/tmp/b/$w PYTHON=python3 BENCH_TIMEOUT=90 TORCH_TIMEOUT=80 timeout 100 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
