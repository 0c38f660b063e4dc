#!/bin/bash
# Session 35, call 3, 4 GPUs (~430 s; guards keep it under 540). Carry build-c35/bins41.tar.xz
# (m35/ = main 068d7ee) and build-c35/bins42.tar.xz, all from branch bg-rq ff4cb24:
#   i256/ background requantization (warps 9-11) in INT8 kernels only, experts of >= 256 rows
#         (the branch's defaults; FP8 / BF16 kernels as main's);
#   i128/ the same from 128 rows;
#   a256/ every mode from 256 rows, and the GEMM1 counts of those experts left to the consumers
#         (call 2's bg512 / bg256 ran it in FP8 only after the CTA's GEMM1 items: +2 to +6 us);
#   t17/  every mode from 17 rows (tests only; call 2's 16 hung: experts of <= 16 rows raise no
#         g1_ready under EAGER_RQ).
# 1. A/B m35 / i256 / a256 / i128 (DFM_CUDA_FUSED=1), three rounds rotated.
# 2. t17's and i256's fused C suites, t17's 1000-call sequence and memcheck (I = 640 cases).
# 3. bench/run_bench.sh with i256: the v35 table (i256 is what would be merged).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c35/bins41.tar.xz m35 && tar -C /tmp/b -xJf build-c35/bins42.tar.xz; st untar $?
ab_rounds 3 170 m35 i256 a256 i128 -- dsv3-e32:1,32,128,256,512,768,1024 qwen3-235b:1,32,128
for w in t17 i256; do C="/tmp/b/$w/test_moe -b cuda -p threads"
  ok 260 && { timeout 70 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?; }
done
C="/tmp/b/t17/test_moe -b cuda -p threads"
ok 330 && { timeout 25 $C -o sequence -c 1000 > $L/t17_seq1000.txt 2>&1; st t17_seq1000 $?; }
ok 340 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "I=640" > $L/t17_memcheck.txt 2>&1; st t17_memcheck $?; }
w=i256; mkdir -p /tmp/b/$w/bench && ln -sf /tmp/b/$w/dfm_bench /tmp/b/$w/bench/dfm_bench
ok 400 && { OUT=$L/bench BUILD=/tmp/b/$w PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 140 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
