#!/bin/bash
# For the next session (NOT RUN), 4 x H100, one call (~230 s): branches/rq-warps.patch
# (DFM_CUDA_FUSED_RQ_WARPS=1: a few-row expert's requantization done by the CTA's idle warps
# 9-11, its consumers going on to their next item at once; default 0) against main: A/B m / r0 /
# r1, three rounds; the per-item trace of qwen3-235b T = 1 with it (the CTAs that complete an
# expert should no longer hold their next GEMM1 item ~10 us: call 2 / call 3's traces); then the
# fused C suite, the 1000-call sequence and memcheck of the fused FP8 R = 2 cases with it on.
# Compiled (WERROR build, ptxas: no spill, no C7511), not run.
# build-c27: bins1.tar.xz m/ = main 27de2c4; bins5.tar.xz rqw/ = main + rq-warps.patch (773ff52),
# stripped `make CUDA=1 WERROR=1` builds (if lost: rebuild, strip --strip-debug, tar -cJf).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for n in 1 5; do tar -C /tmp/b -xJf build-c27/bins$n.tar.xz; done; st untar $?
for i in 1 2 3; do for v in m r0 r1; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  b=/tmp/b/rqw/dfm_bench; e=${v#r}; [ $v = m ] && { b=/tmp/b/m/dfm_bench; e=0; }
  ok 150 && { timeout 20 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=$e $b -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
mkdir -p $L/items && timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/it \
  /tmp/b/rqw/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/items.out 2>&1; st items $?
python3 scripts/fused_items.py "$L/items/it.qwen3-235b.T1.rank*.csv" > $L/items_summary.txt 2>&1
F="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=1"
ok 250 && { timeout 80 $F /tmp/b/rqw/test_moe -b cuda -p threads > $L/rqw_fused.txt 2>&1; st rqw_fused $?; }
ok 320 && { timeout 40 $F /tmp/b/rqw/test_moe -b cuda -p threads -o sequence -c 1000 > $L/rqw_seq1000.txt 2>&1; st rqw_seq1000 $?; }
ok 360 && { timeout 80 $F DFM_TEST_TIMEOUT_S=70 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  /tmp/b/rqw/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/rqw_memcheck.txt 2>&1; st rqw_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
