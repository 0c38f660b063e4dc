#!/bin/bash
# Session 29 call 1 (prepared in session 28), 4 x H100, one call (~330 s; guards keep it under 560):
# cnt-warps (branches/cnt-warps.patch on session 27's branches/rq-warps.patch; build-c28/bins10
# cnt/ = modes 0-2 as run in call 6, bins11 cnt3/ = the same plus mode 3, compiled clean, not
# run). Call 6 (two rounds): mode 2 (warps 9-11 count every GEMM1 item and requantize completed
# few-row experts) gained at qwen3-235b T = 1 / 128 (-2.3 / -7.2 us), dsv3-e32 T = 32 (-2.1),
# and lost at qwen3-235b T = 32 (+42: 8-row experts requantized row by row by 96 threads),
# dsv3-e32-int8 T = 32 (+27) and once qwen3-30b-bf16 T = 1 (one round 99.0 against 55.9).
# Mode 3 keeps the experts of 3..16 rows on the consumers' path.
# If build-c28 is lost: `git am` session 27's branches/rq-warps.patch, then this session's
# branches/cnt-warps.patch (its first commit = bins10's code, all = bins11's), and
# `make CUDA=1 WERROR=1 BUILD=build-X -j8 build-X/libdfm.so build-X/tests/test_moe build-X/bench/dfm_bench`,
# strip --strip-debug, tar -cJf (directories cnt/ and cnt3/).
# A/B m (main 27de2c4, build-c27/bins1) / c2 (bins10) / c3 / c0 (bins11), three rounds;
# qwen3-30b-bf16 T = 1 five more times with c2 and c3 (the one-round pathology);
# bins11's fused suite at modes 2 and 3, 1000-call sequence and memcheck at 3.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
mkdir -p /tmp/b && for t in build-c27/bins1 build-c28/bins10 build-c28/bins11; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
run() {
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    c2) echo "env DFM_CUDA_FUSED_RQ_WARPS=2 /tmp/b/cnt/dfm_bench" ;;
    c3) echo "env DFM_CUDA_FUSED_RQ_WARPS=3 /tmp/b/cnt3/dfm_bench" ;;
    c0) echo "env DFM_CUDA_FUSED_RQ_WARPS=0 /tmp/b/cnt3/dfm_bench" ;;
  esac
}
for i in 1 2 3; do for v in m c2 c3 c0; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 200 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L m c2 c3 c0 > $L/ab_table.txt 2>&1
for i in 1 2 3 4 5; do for v in c2 c3; do
  ok 240 && { timeout 15 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c qwen3-30b-bf16 -t 1 -s 0 >> $L/bf16_$v.txt 2>&1; st bf16_${v}_$i $?; }
done; done
C="env DFM_CUDA_FUSED=1 /tmp/b/cnt3/test_moe -b cuda -p threads"
ok 260 && { timeout 70 env DFM_CUDA_FUSED_RQ_WARPS=3 $C > $L/c3_fused.txt 2>&1; st c3_fused $?; }
ok 330 && { timeout 70 env DFM_CUDA_FUSED_RQ_WARPS=2 $C > $L/c2_fused.txt 2>&1; st c2_fused $?; }
ok 400 && { timeout 30 env DFM_CUDA_FUSED_RQ_WARPS=3 $C -o sequence -c 1000 > $L/c3_seq1000.txt 2>&1; st c3_seq1000 $?; }
ok 430 && { timeout 65 env DFM_CUDA_FUSED_RQ_WARPS=3 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  /tmp/b/cnt3/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/c3_memcheck.txt 2>&1; st c3_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
