#!/bin/bash
# Session 33, call 4, 4 x H100 machine, GPU 0 only (~200 s). Carry build-c32n/bins27.tar.xz (v24/).
# Call 3's ncu found no row: dfm_bench -L has no T = 1024 case (its local mirror would pass SPEC's
# 1024 tokens). So one rank (-r 1) at T = 1024: 8192 rows over 32 experts, compute-bound like the
# 4-rank T = 1024 row. First whether the kernel's gap to the pipeline shows there (fused and
# pipeline timings, INT8 and FP8), then ncu of the fused kernel and the pipeline's two GEMMs (INT8).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz; st untar $?
export CUDA_VISIBLE_DEVICES=0
B=/tmp/b/v24/dfm_bench
for f in 1 0 1 0; do DFM_CUDA_FUSED=$f timeout 40 $B -r 1 -c dsv3-e32 -t 256,1024 -s 0 >> $L/r1_fused$f.txt 2>&1; st r1_fused$f $?; done
NCU=(ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis)
A="-r 1 -c dsv3-e32-int8 -t 1024 -s 0 -w 5 -n 1"
ok 300 && { DFM_CUDA_FUSED=1 timeout 90 "${NCU[@]}" -k regex:fused_kernel --launch-skip 5 --launch-count 1 $B $A > $L/ncu_fused.txt 2>&1; st ncu_fused $?; }
ok 400 && { DFM_CUDA_FUSED=0 timeout 90 "${NCU[@]}" -k regex:expert_gemm_kernel --launch-skip 10 --launch-count 2 $B $A > $L/ncu_pipeline.txt 2>&1; st ncu_pipeline $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
