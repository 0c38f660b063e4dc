#!/bin/bash
# Session 30 call 1 (prepared in session 29), 4 x H100, one call (~420 s; guards keep it under 560).
# Carry build-c27 and build-c29. Binaries (stripped `make CUDA=1 WERROR=1` builds):
#   build-c27/bins1 m/ = main 27de2c4 (before this session's merge)
#   build-c29/bins14 e/ = main ca1776a's src/ (cnt-warps, FUSED_RQ_WARPS 4 the default)
#   build-c29/bins16 w/ = branches/rqw-warp-rows.patch on main 1de888c: warps 9-11 requantize a
#     row a warp (three rows at once; before: each row over the 96 threads with a barrier a row),
#     FUSED_REGS_PRODUCER 72, and rq_warps 5 (mode 3 + a completed > 16-row expert's eager
#     requantization started by warps 9-11 by claims, eager_rq 3's condition).
# If lost: m/ from `git checkout 27de2c4`, e/ from main ca1776a, w/ = `git am` the patch on 1de888c.
# 1. A/B m / e / e0 (e, RQ_WARPS=0) / w4 (w, default 4) / w5 / w2 (w, RQ_WARPS=2: every
#    <= 16-row expert on warps 9-11, now a row a warp), three rounds, every T = 1, 32, 128:
#    is the merge's +0.6..+3.4 us at T >= 32 against e0 (session 29, call 3) real; do a warp a
#    row and mode 5 gain (qwen3-235b T = 128, dsv3-e32-int8 T = 32, qwen3-235b T = 32 for w2)?
# 2. Per-item traces of dsv3-e32-int8 T = 32 with e0, w3 (w, RQ_WARPS=3) and w5.
# 3. w's fused suite at modes 5 and 2, 1000-call sequence and memcheck at 5.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for t in build-c27/bins1 build-c29/bins14 build-c29/bins16; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
run() {
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    e) echo "/tmp/b/e/dfm_bench" ;;
    e0) echo "env DFM_CUDA_FUSED_RQ_WARPS=0 /tmp/b/e/dfm_bench" ;;
    w*) echo "env DFM_CUDA_FUSED_RQ_WARPS=${1#w} /tmp/b/w/dfm_bench" ;;
  esac
}
for i in 1 2 3; do for v in m e e0 w4 w5 w2; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 230 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L m e e0 w4 w5 w2 > $L/ab_table.txt 2>&1
for v in e0 w3 w5; do
  ok 270 && { mkdir -p $L/items_$v && timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items_$v/it \
    $(run $v) -r 4 -c dsv3-e32-int8 -t 32 -s 0 -w 5 -n 20 > $L/items_$v.out 2>&1; st items_$v $?;
    python3 scripts/fused_items.py "$L/items_$v/it.dsv3-e32-int8.T32.rank*.csv" > $L/items_${v}_summary.txt 2>&1; rm -rf $L/items_$v; }
done
C="/tmp/b/w/test_moe -b cuda -p threads"
ok 300 && { timeout 70 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=5 $C > $L/w5_fused.txt 2>&1; st w5_fused $?; }
ok 370 && { timeout 70 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=2 $C > $L/w2_fused.txt 2>&1; st w2_fused $?; }
ok 440 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=5 $C -o sequence -c 1000 > $L/w5_seq1000.txt 2>&1; st w5_seq1000 $?; }
ok 470 && { timeout 65 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=5 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  $C -o "fused(q=fp8,R=2," > $L/w5_memcheck.txt 2>&1; st w5_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
