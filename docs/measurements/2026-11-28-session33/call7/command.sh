#!/bin/bash
# Session 33, call 7, 4 x H100 or H200 (~250 s; guards keep it under 400).
# Carry build-c32n/bins27.tar.xz (v24/ = main ea1017f's kernel) and build-c33/bins33.tar.xz
# (w4/ = call 6's build, a row a warp for INT8 experts of >= 256 rows; w5/ = the same src with
# -DFUSED_RQ_WARP_ROWS=512). Call 6 (4 x H200): w4 took dsv3-e32-int8 T = 1024 1342.3 -> 1294.6
# but T = 256 (256 rows an expert) 418.0 -> 429.4 and T = 1 114.4 -> 115.5; its memcheck runs
# timed out in NCCL's init under the sanitizer (DFM_TEST_TIMEOUT_S 20), the suite passed.
# 1. A/B v24 / w4 / w5 at dsv3-e32-int8 T = 1 / 32 / 128 / 256 / 1024, three rounds rotated.
# 2. w5's fused C suite, 1000-call sequence, memcheck of the new INT8 cases (longer timeouts).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz && tar -C /tmp/b -xJf build-c33/bins33.tar.xz; st untar $?
V=(v24 w4 w5)
for i in 0 1 2; do for k in 0 1 2; do v=${V[$(( (k + i) % 3 ))]}
  timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c dsv3-e32-int8 -t 1,32,128,256,1024 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_$i $?
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
C="/tmp/b/w5/test_moe -b cuda -p threads"
timeout 70 $C -o "fused(" > $L/w5_fused.txt 2>&1; st w5_fused $?
timeout 25 $C -o sequence -c 1000 > $L/w5_seq1000.txt 2>&1; st w5_seq1000 $?
ok 250 && { DFM_TEST_TIMEOUT_S=100 timeout 130 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=int8,R=1,E=4,H=256,I=64,K=2,M=1024" > $L/w5_memcheck.txt 2>&1; st w5_memcheck $?; }
ok 330 && { DFM_TEST_TIMEOUT_S=60 timeout 70 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "I=640" > $L/w5_memcheck2.txt 2>&1; st w5_memcheck2 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
