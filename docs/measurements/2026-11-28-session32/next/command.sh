#!/bin/bash
# For the next session (NOT RUN), 4 x H100, one call (~330 s; guards keep it under 420).
# Carry build-c32n/bins27.tar.xz: stripped `make CUDA=1 WERROR=1` builds of main 4c78624's src/
# (libdfm.so, test_moe, dfm_bench each):
#   v0/  = main (FUSED_RQW_MANY_ROWS = FUSED_EAGER_ROWS = 16)
#   v24/ = NVCC="nvcc -DFUSED_RQW_MANY_ROWS=24"   v32/ = NVCC="nvcc -DFUSED_RQW_MANY_ROWS=32"
# If lost: build each with BUILD=build-X and that NVCC; strip --strip-debug; tar -cJf (dirs v0 v24 v32).
# 1. A/B v0 / v24 / v32 (all DFM_CUDA_FUSED=1), three rounds rotated: session 32's call 4 had
#    rq_warps 3's > 16-row hand-off cost dsv3-e256 T = 128 (~16 rows an expert) 21 us against
#    none (RQ_WARPS 4), and gain 8 us at qwen3-235b T = 128 (~32 rows) and 48 us at dsv3-e32
#    T = 1024. A higher threshold may keep both. Rows: dsv3-e256 T = 32 / 128, qwen3-235b
#    T = 1 / 32 / 128, dsv3-e32 (and -int8: INT8 has no such hand-off, a control) T = 32 / 128 /
#    1024, qwen3-30b-bf16 T = 32 / 128.
# 2. The winner's fused C suite, 1000-call sequence and memcheck (its SASS differs from main's).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz; st untar $?
V=(v0 v24 v32)
for i in 0 1 2; do for k in 0 1 2; do v=${V[$(( (k + i) % 3 ))]}
  for ct in dsv3-e256:32,128 qwen3-235b:1,32,128 dsv3-e32:32,128,1024 qwen3-30b-bf16:32,128; do
    ok 300 && { timeout 30 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
# the variant with the lowest mean ratio to v0 (v0 itself when neither is below 0.995)
w=$(python3 scripts/ab_means.py -b v0:0.995 $L ${V[@]} 2>> $L/steps.txt)
echo "winner: $w" >> $L/steps.txt
C="/tmp/b/$w/test_moe -b cuda -p threads"
ok 310 && { timeout 60 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?; }
ok 370 && { timeout 25 $C -o sequence -c 1000 > $L/${w}_seq1000.txt 2>&1; st ${w}_seq1000 $?; }
ok 395 && { DFM_TEST_TIMEOUT_S=20 timeout 25 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=fp8,R=1," > $L/${w}_memcheck.txt 2>&1; st ${w}_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
