#!/bin/bash
# Session 34, call 1, on every GPU of the machine (4 meant; ~420 s, guards keep it under 560).
# Carry build-c33/bins34.tar.xz (m/ = main 443b5e5's kernel, = main 5d49c81's; q/ = branch
# qok-cache, session 33's next/qok-cache.patch) and build-c34/bins35.tar.xz (branch rqw-fp8
# 60821f1: FP8 / BF16 experts of >= FUSED_RQ_WARP_ROWS (512) rows requantized a row a warp,
# f2/ = 2 float4 a lane (the branch's default), f1/ = 1; stripped `make CUDA=1 WERROR=1` builds).
# 1. A/B m / q / f2 / f1 (DFM_CUDA_FUSED=1), three rounds rotated: the decode rows, dsv3-e32
#    T = 512 / 1024 (~512 / ~1024 rows an expert at 4 ranks; 2048 too below 4 ranks).
# 2. q's and f2's fused C suites, q's 1000-call sequence, memcheck of the >= 512-row cases.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
R=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c33/bins34.tar.xz && tar -C /tmp/b -xJf build-c34/bins35.tar.xz; st untar $?
BIG=512,1024; [ $R -lt 4 ] && BIG=512,1024,2048
V=(m q f2 f1)
for i in 0 1 2; do for k in 0 1 2 3; do v=${V[$(( (k + i) % 4 ))]}
  for ct in dsv3-e32:1,32,128,$BIG qwen3-235b:1,32,128 qwen3-30b-bf16:32,128 dsv3-e256:32,128; do
    ok 330 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct%%:*}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
for v in q f2; do C="/tmp/b/$v/test_moe -b cuda -p threads"
  ok 400 && { timeout 70 $C -o "fused(" > $L/${v}_fused.txt 2>&1; st ${v}_fused $?; }
done
C="/tmp/b/q/test_moe -b cuda -p threads"
ok 470 && { timeout 25 $C -o sequence -c 1000 > $L/q_seq1000.txt 2>&1; st q_seq1000 $?; }
C="/tmp/b/f2/test_moe -b cuda -p threads"
ok 480 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "I=640" > $L/f2_memcheck.txt 2>&1; st f2_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
