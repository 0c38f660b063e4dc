#!/bin/bash
# Session 34, call 2, on every GPU of the machine (4 meant; ~380 s, guards keep it under 560).
# Carry build-c33/bins34.tar.xz (m/ = main 5d49c81's kernel, q/ = branch qok-cache) and
# build-c34/bins36.tar.xz (branch qok-fp8 645bb37 = qok-cache on rqw-fp8, FP8 / BF16 rows a warp
# from FUSED_RQ_WARP_ROWS_FP 768 rows: qC/ = its defaults (2 float4 a lane, no qok in version 5's
# FP8 kernel: C7511 with both); qf1/ = -DFUSED_RQ_WARP_V4_FP=1 -DFUSED_QOK_TOK16=1 (1 float4 a
# lane, qok in every kernel)). Call 1 (4 x H200): q -25 us at dsv3-e32 T = 1024, f2 (rows a warp
# from 512 rows) -49 there but +9 at T = 512.
# 1. A/B m / q / qC / qf1 (DFM_CUDA_FUSED=1), three rounds rotated, the decode rows and
#    dsv3-e32 T = 256 / 512 / 768 / 1024; then m with EAGER_RQ 1 against 0 at dsv3-e32-int8 T = 32.
# 2. qC's and qf1's fused C suites, qC's 1000-call sequence and memcheck (I = 640 cases).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
R=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c33/bins34.tar.xz && tar -C /tmp/b -xJf build-c34/bins36.tar.xz; st untar $?
V=(m q qC qf1)
for i in 0 1 2; do for k in 0 1 2 3; do v=${V[$(( (k + i) % 4 ))]}
  for ct in dsv3-e32:1,32,128,256,512,768,1024 qwen3-235b:1,32,128 qwen3-30b-bf16:32,128 dsv3-e256:32,128; do
    ok 300 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct%%:*}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
for i in 0 1 2; do for e in 0 1; do
  ok 330 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=$e /tmp/b/m/dfm_bench -r $R -c dsv3-e32-int8 -t 32 -s 0 >> $L/ab_eager$e.txt 2>&1; st eager${e}_$i $?; }
done; done
python3 scripts/ab_means.py -v $L eager0 eager1 > $L/eager_table.txt 2>&1
for v in qC qf1; do C="/tmp/b/$v/test_moe -b cuda -p threads"
  ok 400 && { timeout 70 $C -o "fused(" > $L/${v}_fused.txt 2>&1; st ${v}_fused $?; }
done
C="/tmp/b/qC/test_moe -b cuda -p threads"
ok 470 && { timeout 25 $C -o sequence -c 1000 > $L/qC_seq1000.txt 2>&1; st qC_seq1000 $?; }
ok 480 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "I=640" > $L/qC_memcheck.txt 2>&1; st qC_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
