#!/bin/bash
# Session 33, call 6, 4 x H100 (~200 s; guards keep it under 420).
# Carry build-c32n/bins27.tar.xz (v24/ = main ea1017f's kernel) and build-c33/bins33.tar.xz
# (w4/ = a stripped `make CUDA=1 WERROR=1` build of this commit's src/: INT8 experts of
# >= FUSED_RQ_WARP_ROWS (256) rows requantized a row a warp in the GEMM2 help; its test_moe has
# the two new INT8 cases of >= 256 rows an expert that reach that path).
# Call 5's trace at dsv3-e32-int8 T = 1024: each CTA waits ~220 us in all before its ~24 GEMM2
# items' gates open (the requantization help and the gate), about what its GEMM2 items compute.
# 1. v24's per-item trace (DFM_CUDA_FUSED_TRACE_ITEMS) at 4 ranks T = 1024, INT8 and FP8; w4's
#    trace summary of the same.
# 2. w4's fused C suite, 1000-call sequence, memcheck of the new INT8 cases.
# 3. A/B v24 / w4 at dsv3-e32-int8 T = 1 / 32 / 128 / 256 / 1024, three rounds rotated.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins27.tar.xz && tar -C /tmp/b -xJf build-c33/bins33.tar.xz; st untar $?
mkdir -p $L/items
DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/v24 timeout 60 /tmp/b/v24/dfm_bench -r 4 -c dsv3-e32 -t 1024 -s 0 > $L/trace_v24.txt 2>&1; st trace_v24 $?
DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 timeout 60 /tmp/b/w4/dfm_bench -r 4 -c dsv3-e32-int8 -t 256,1024 -s 0 > $L/trace_w4.txt 2>&1; st trace_w4 $?
C="/tmp/b/w4/test_moe -b cuda -p threads"
timeout 70 $C -o "fused(" > $L/w4_fused.txt 2>&1; st w4_fused $?
timeout 25 $C -o sequence -c 1000 > $L/w4_seq1000.txt 2>&1; st w4_seq1000 $?
for o in "fused(q=int8,R=1,E=4,H=256,I=64,K=2,M=1024" "I=640"; do
  DFM_TEST_TIMEOUT_S=20 timeout 40 compute-sanitizer --tool memcheck --report-api-errors no \
    --error-exitcode 9 $C -o "$o" >> $L/w4_memcheck.txt 2>&1; st w4_memcheck $?
done
V=(v24 w4)
for i in 0 1 2; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  ok 380 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c dsv3-e32-int8 -t 1,32,128,256,1024 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_$i $?; }
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
