#!/bin/bash
# Session 35, call 2, 4 GPUs (~300 s; guards keep it under 420). Carry build-c35/bins41.tar.xz:
#   m35/   main 068d7ee: rq-ahead-bit2 merged (SASS identical to session 34's GPU-tested b30d05d);
#   bg512/ branch bg-rq cf04f75: warps 9-11 requantize experts of >= 512 rows in the background once their
#          CTA's GEMM1 items are taken (FUSED_BG_RQ_ROWS 512, the branch's default);
#   bg256/ the same from 256 rows;
#   bgt/   the same from 16 rows (tests only: the path in most fused cases).
# 1. A/B m35 / bg512 / bg256 (DFM_CUDA_FUSED=1), three rounds rotated.
# 2. bgt's and bg512's fused C suites, bgt's 1000-call sequence, memcheck of bgt (I = 640 cases)
#    and of m35 (R = 1 FP8: the merged bit2 had none).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c35/bins41.tar.xz; st untar $?
ab_rounds 3 150 m35 bg512 bg256 -- dsv3-e32:1,32,128,256,512,768,1024 qwen3-235b:1,32,128
for w in bgt bg512; do C="/tmp/b/$w/test_moe -b cuda -p threads"
  ok 230 && { timeout 70 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?; }
done
C="/tmp/b/bgt/test_moe -b cuda -p threads"
ok 310 && { timeout 25 $C -o sequence -c 1000 > $L/bgt_seq1000.txt 2>&1; st bgt_seq1000 $?; }
ok 320 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "I=640" > $L/bgt_memcheck.txt 2>&1; st bgt_memcheck $?; }
C="/tmp/b/m35/test_moe -b cuda -p threads"
ok 340 && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=fp8,R=1," > $L/m35_memcheck.txt 2>&1; st m35_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
