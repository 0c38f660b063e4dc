#!/bin/bash
# Session 33, call 3, 4 x H100 (~470 s; guards keep it under 560). Carry build-c32n/bins27.tar.xz.
# v24/ = 4c78624's src built with -DFUSED_RQW_MANY_ROWS=24: call 2's A/B had it take dsv3-e256
# T = 128 1099.4 -> 1081.4 us with every other row within +-3, so main's default becomes 24
# (its kernel is this build's; main's later host change, config.path, is not in the kernel).
# 1. v24's fused C suite, 1000-call sequence and memcheck.
# 2. bench/run_bench.sh with v24 on all four GPUs: the v33 table.
# 3. ncu on GPU 0 at dsv3-e32-int8 T = 1024 with communication disabled (-L): the fused kernel,
#    and the pipeline's wgmma GEMM launches of the same case.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz; st untar $?
w=v24; C="/tmp/b/$w/test_moe -b cuda -p threads"
timeout 60 $C -o "fused(" > $L/${w}_fused.txt 2>&1; st ${w}_fused $?
timeout 25 $C -o sequence -c 1000 > $L/${w}_seq1000.txt 2>&1; st ${w}_seq1000 $?
DFM_TEST_TIMEOUT_S=20 timeout 25 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=fp8,R=1," > $L/${w}_memcheck.txt 2>&1; st ${w}_memcheck $?
mkdir -p /tmp/b/$w/bench && ln -sf /tmp/b/$w/dfm_bench /tmp/b/$w/bench/dfm_bench
OUT=$L/bench BUILD=/tmp/b/$w PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 250 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
NCU=(ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats)
B="/tmp/b/$w/dfm_bench -L -r 4 -c dsv3-e32-int8 -t 1024 -s 0 -w 5 -n 1"
ok 420 && { CUDA_VISIBLE_DEVICES=0 DFM_CUDA_FUSED=1 timeout 60 "${NCU[@]}" -k regex:fused_kernel --launch-skip 5 --launch-count 1 $B > $L/ncu_fused.txt 2>&1; st ncu_fused $?; }
ok 490 && { CUDA_VISIBLE_DEVICES=0 DFM_CUDA_FUSED=0 timeout 60 "${NCU[@]}" -k regex:wg_gemm_kernel --launch-skip 10 --launch-count 2 $B > $L/ncu_pipeline.txt 2>&1; st ncu_pipeline $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
