#!/bin/bash
# Session 34, call 3, 4 GPUs (~400 s; guards keep it under 560). Carry build-c33/bins34.tar.xz
# (m/ = main 5d49c81's kernel) and build-c34/bins37.tar.xz (m34/ = branch qok-fp8 000b262: qok in
# every kernel, FP8 / BF16 rows a warp from 768 rows with 1 float4 a lane, one warp-row block for
# all modes; call 2's qf1 in every FP8 kernel by cuobjdump, INT8 / BF16 differ in register names).
# 1. A/B m / m34 (DFM_CUDA_FUSED=1), three rounds rotated, the decode rows and T up to 1024.
# 2. m34's fused C suite, 1000-call sequence, memcheck (R = 1 FP8; the I = 640 cases).
# 3. bench/run_bench.sh with m34 on all GPUs: the v34 table.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
R=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c33/bins34.tar.xz && tar -C /tmp/b -xJf build-c34/bins37.tar.xz; st untar $?
V=(m m34)
for i in 0 1 2; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  for ct in dsv3-e32:1,32,128,256,512,768,1024 qwen3-235b:1,32,128 qwen3-30b-bf16:32,128 dsv3-e256:32,128; do
    ok 200 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct%%:*}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
w=m34; C="/tmp/b/$w/test_moe -b cuda -p threads"
ok 260 && { timeout 70 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?; }
ok 330 && { timeout 25 $C -o sequence -c 1000 > $L/${w}_seq1000.txt 2>&1; st ${w}_seq1000 $?; }
ok 340 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=fp8,R=1," > $L/${w}_memcheck.txt 2>&1; st ${w}_memcheck $?; }
ok 360 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "I=640" > $L/${w}_memcheck2.txt 2>&1; st ${w}_memcheck2 $?; }
mkdir -p /tmp/b/$w/bench && ln -sf /tmp/b/$w/dfm_bench /tmp/b/$w/bench/dfm_bench
ok 440 && { OUT=$L/bench BUILD=/tmp/b/$w PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 110 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
