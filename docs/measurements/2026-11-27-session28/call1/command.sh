#!/bin/bash
# Session 28 call 1 (prepared in session 27 as next/command.sh), 4 x H100, one call (~470 s; guards keep it under 595): the two branches prepared in the
# twenty-seventh session, against main, then their suites.
#  - rq-warps (branches/rq-warps.patch, 773ff52): DFM_CUDA_FUSED_RQ_WARPS=1 hands a few-row
#    expert's requantization to the CTA's idle warps 9-11, so the consumers that completed its
#    GEMM1 go on to their next item at once (calls 2-3's traces: ~10 us held at qwen3-235b T = 1);
#  - ksplit (branches/ksplit.patch): DFM_CUDA_FUSED_KSPLIT=N splits each GEMM1 item into two
#    halves of K when a call has at most N GEMM1 items (and <= 32 token columns an expert): the
#    second half to finish adds the other's partial sums and runs the epilogue (qwen3-235b T = 1:
#    192 items on 132 CTAs; its second wave streams at ~2 TB/s). FP8 and BF16 kernels only.
# A/B m / r1 / k0 / k200 / k264 / rk (both: rq-warps on, ksplit at 264), three rounds; per-item
# traces of qwen3-235b T = 1 with m, r1 and k264;
# then each branch's fused C suite (ksplit at 1024: every small test call split), 1000-call
# sequence and memcheck of the fused FP8 R = 2 cases. Both compiled with WERROR=1 (ptxas: no
# spill, no C7511; ksplit leaves the INT8, version 5 and unfused GEMM kernels' SASS unchanged).
# build-c27: bins1 m/ = main 27de2c4; bins5 rqw/ = main + rq-warps; bins6 ks/ = main + ksplit;
# bins7 rk/ = main + rq-warps.patch + ksplit.patch (git am; the three conflicts are both sides' additions)
# (stripped `make CUDA=1 WERROR=1` builds; if lost: rebuild from the patches).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for n in 1 5 6 7; do tar -C /tmp/b -xJf build-c27/bins$n.tar.xz; done; st untar $?
run() { # variant -> binary and environment
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    r1) echo "env DFM_CUDA_FUSED_RQ_WARPS=1 /tmp/b/rqw/dfm_bench" ;;
    k*) echo "env DFM_CUDA_FUSED_KSPLIT=${1#k} /tmp/b/ks/dfm_bench" ;;
    rk) echo "env DFM_CUDA_FUSED_RQ_WARPS=1 DFM_CUDA_FUSED_KSPLIT=264 /tmp/b/rk/dfm_bench" ;;
  esac
}
for i in 1 2 3; do for v in m r1 k0 k200 k264 rk; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 230 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
for v in m r1 k264; do
  mkdir -p $L/items_$v && timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items_$v/it \
    $(run $v) -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/items_$v.out 2>&1; st items_$v $?
  python3 scripts/fused_items.py "$L/items_$v/it.qwen3-235b.T1.rank*.csv" $([ $v = k264 ] && echo 2) > $L/items_${v}_summary.txt 2>&1
done
R="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=1" K="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_KSPLIT=1024"
ok 300 && { timeout 70 $R /tmp/b/rqw/test_moe -b cuda -p threads > $L/rqw_fused.txt 2>&1; st rqw_fused $?; }
ok 360 && { timeout 70 $K /tmp/b/ks/test_moe -b cuda -p threads > $L/ks_fused.txt 2>&1; st ks_fused $?; }
ok 430 && { timeout 30 $R /tmp/b/rqw/test_moe -b cuda -p threads -o sequence -c 1000 > $L/rqw_seq1000.txt 2>&1; st rqw_seq1000 $?; }
ok 460 && { timeout 30 $K /tmp/b/ks/test_moe -b cuda -p threads -o sequence -c 1000 > $L/ks_seq1000.txt 2>&1; st ks_seq1000 $?; }
ok 490 && { timeout 55 $K DFM_TEST_TIMEOUT_S=50 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  /tmp/b/ks/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/ks_memcheck.txt 2>&1; st ks_memcheck $?; }
ok 545 && { timeout 45 $R DFM_TEST_TIMEOUT_S=40 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  /tmp/b/rqw/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/rqw_memcheck.txt 2>&1; st rqw_memcheck $?; }
python3 scripts/ab_means.py -v $L m r1 k0 k200 k264 rk > $L/ab_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
