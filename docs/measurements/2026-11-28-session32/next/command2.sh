#!/bin/bash
# For the next session (NOT RUN), 4 x H100, one call (~330 s; guards keep it under 420), after
# command.sh (merge its winner first and rebuild if it is not v0). Carry build-c32n/bins27.tar.xz
# (v0/ = main 4c78624's src/: libdfm.so, test_moe, dfm_bench).
# 1. bench/run_bench.sh on all four GPUs: the v33 table (v31 is the last full one; INT8's EAGER_RQ 0
#    default changes its dsv3-e32-int8 rows and the INT8 comm cost, which needs the -L row).
# 2. ncu on GPU 0 at dsv3-e32-int8 T = 1024 with communication disabled (-L), where the kernel
#    stays 13 % behind the pipeline (session 32, call 4): the fused kernel, and the pipeline's
#    wgmma GEMM launches (GEMM1 and GEMM2) of the same case.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz; st untar $?
mkdir -p /tmp/b/v0/bench && ln -sf /tmp/b/v0/dfm_bench /tmp/b/v0/bench/dfm_bench
OUT=$L/bench BUILD=/tmp/b/v0 PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 240 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
NCU=(ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats)
B="/tmp/b/v0/dfm_bench -L -r 4 -c dsv3-e32-int8 -t 1024 -s 0 -w 5 -n 1"
ok 300 && { CUDA_VISIBLE_DEVICES=0 DFM_CUDA_FUSED=1 timeout 60 "${NCU[@]}" -k regex:fused_kernel --launch-skip 5 --launch-count 1 $B > $L/ncu_fused.txt 2>&1; st ncu_fused $?; }
ok 360 && { CUDA_VISIBLE_DEVICES=0 DFM_CUDA_FUSED=0 timeout 60 "${NCU[@]}" -k regex:wg_gemm_kernel --launch-skip 10 --launch-count 2 $B > $L/ncu_pipeline.txt 2>&1; st ncu_pipeline $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
