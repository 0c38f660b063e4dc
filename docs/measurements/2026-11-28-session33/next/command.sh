#!/bin/bash
# For the next session (NOT RUN), 4 x H100 (or H200), one call (~300 s; guards keep it under 560).
# Carry build-c33/bins34.tar.xz: stripped `make CUDA=1 WERROR=1` builds (libdfm.so, test_moe,
# dfm_bench each):
#   m/ = main 443b5e5's kernel (session 33's w5 build: bea2bc3's src with -DFUSED_RQ_WARP_ROWS=512;
#        same fused.o SASS as main 443b5e5, cuobjdump md5)
#   q/ = branch qok-cache (next/qok-cache.patch on main 967717d): GEMM2 items skip the
#        requantization help and the gate for an expert whose gate the CTA passed before
# If lost: apply the patch to main, `make CUDA=1 WERROR=1 BUILD=build-q -j16 build-q/libdfm.so
# build-q/tests/test_moe build-q/bench/dfm_bench`, strip --strip-debug, tar -cJf (dirs m q).
# 1. A/B m / q (all DFM_CUDA_FUSED=1), three rounds rotated, the decode rows and T = 1024.
# 2. q's fused C suite, 1000-call sequence and memcheck (R = 1 FP8 and the INT8 >= 512-row case).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c33/bins34.tar.xz; st untar $?
V=(m q)
for i in 0 1 2; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  for ct in dsv3-e32:1,32,128,1024 qwen3-235b:1,32,128 qwen3-30b-bf16:32,128 dsv3-e256:32,128; do
    ok 260 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
C="/tmp/b/q/test_moe -b cuda -p threads"
ok 290 && { timeout 70 $C -o "fused(" > $L/q_fused.txt 2>&1; st q_fused $?; }
ok 360 && { timeout 25 $C -o sequence -c 1000 > $L/q_seq1000.txt 2>&1; st q_seq1000 $?; }
ok 385 && { DFM_TEST_TIMEOUT_S=60 timeout 80 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=fp8,R=1," > $L/q_memcheck.txt 2>&1; st q_memcheck $?; }
ok 470 && { DFM_TEST_TIMEOUT_S=60 timeout 80 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=int8,R=1,E=4,H=256,I=64,K=2,M=1024" > $L/q_memcheck2.txt 2>&1; st q_memcheck2 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
