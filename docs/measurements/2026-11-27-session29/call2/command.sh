#!/bin/bash
# Session 29 call 2, 4 x H100 (~400 s; guards keep it under 560). build-c27/bins1 m/ = main
# 27de2c4; build-c29/bins12: a/ = cnt-warps + mode 4 (the GEMM1 count and requantization
# handed to warps 9-11 only for experts of <= 2 rows; DFM_CUDA_FUSED_RQ_WARPS=4), polls as main;
# r/ = the same + the waits' relaxed spin (DFM_POLL_RELAXED=1: relaxed loads, one acquire load
# once the value is seen; the acquire spin invalidates L1 on every poll).
# A/B m / a4 (a, mode 4) / r0 (r, mode 0: the polls only) / r4 (r, mode 4), three rounds;
# r's fused and pipeline suites at mode 4, fused 1000-call sequence, memcheck (fused).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
mkdir -p /tmp/b && for t in build-c27/bins1 build-c29/bins12; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
run() {
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    a4) echo "env DFM_CUDA_FUSED_RQ_WARPS=4 /tmp/b/a/dfm_bench" ;;
    r0) echo "env DFM_CUDA_FUSED_RQ_WARPS=0 /tmp/b/r/dfm_bench" ;;
    r4) echo "env DFM_CUDA_FUSED_RQ_WARPS=4 /tmp/b/r/dfm_bench" ;;
  esac
}
for i in 1 2 3; do for v in m a4 r0 r4; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 220 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L m a4 r0 r4 > $L/ab_table.txt 2>&1
C="env DFM_CUDA_FUSED_RQ_WARPS=4 /tmp/b/r/test_moe -b cuda -p threads"
ok 260 && { timeout 70 env DFM_CUDA_FUSED=1 $C > $L/r4_fused.txt 2>&1; st r4_fused $?; }
ok 330 && { timeout 75 $C > $L/r4_pipeline.txt 2>&1; st r4_pipeline $?; }
ok 410 && { timeout 30 env DFM_CUDA_FUSED=1 $C -o sequence -c 1000 > $L/r4_seq1000.txt 2>&1; st r4_seq1000 $?; }
ok 440 && { timeout 65 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=4 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  /tmp/b/r/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/r4_memcheck.txt 2>&1; st r4_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
