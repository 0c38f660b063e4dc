#!/bin/bash
# Session 35, call 7, 4 GPUs (~110 s; guards keep it under 120: the budget's last seconds). Carry
# build-c35/bins44.tar.xz (nl/ = main 9bb82e3's kernel) and build-c35/bins45.tar.xz (branch bg-wd
# 27a46ab: wd/ = version 5's token widening also done by warps 9-11 in the background, experts of
# >= 384 rows, FUSED_BG_WD_ROWS; wd17/ = the same from 17 rows, tests only). Call 6's trace had
# FP8's GEMM1 gates waiting 109 us a CTA at T = 1024 (INT8, which widens nothing: 23).
# 1. A/B nl / wd, two rounds rotated. 2. wd17's and wd's fused C suites, wd17's sequence.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in 44 45; do tar -C /tmp/b -xJf build-c35/bins$t.tar.xz; done; st untar $?
ab_rounds 2 40 nl wd -- dsv3-e32:128,512,1024
for w in wd17 wd; do C="/tmp/b/$w/test_moe -b cuda -p threads"
  ok 75 && { timeout 45 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?; }
done
C="/tmp/b/wd17/test_moe -b cuda -p threads"
ok 110 && { timeout 10 $C -o sequence -c 1000 > $L/wd17_seq1000.txt 2>&1; st wd17_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
