#!/bin/bash
# Session 32 call 2, 4 x H100 (~330 s; guards keep it under 450). Carry build-c32/bins24.tar.xz
# (m/ = main 6f70711, the fused kernel the default) and build-c32/bins25.tar.xz (r/ = session 31's
# branches/rqw-helpers.patch on main: libdfm.so, test_moe, dfm_bench).
# 1. A/B m / r (both DFM_CUDA_FUSED=1), four rounds rotated, qwen3-235b / dsv3-e32 / qwen3-30b-bf16
#    at T = 1, 32, 128 and dsv3-e32-int8 at T = 32: r is meant as no behaviour change (fewer
#    instructions in the consumers' GEMM1 count and fused_rq_warps).
# 2. Where v31 had the kernel slower than the pipeline (PERF_NOTES' next item 1): m's kernel (f)
#    against its pipeline (p, DFM_CUDA_FUSED=0) at dsv3-e32 T = 1024, dsv3-e256 T = 128 and
#    qwen3-235b T = 128, three rounds rotated: is the 1.5-5 % real?
# 3. r's fused C suite at R = 1-4, its 1000-call sequence and memcheck.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for t in build-c32/bins24 build-c32/bins25; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
V=(m r)
for i in 0 1 2 3; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}; B=/tmp/b/$v/bench/dfm_bench; [ $v = r ] && B=/tmp/b/r/dfm_bench
  for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
    ok 200 && { timeout 20 env DFM_CUDA_FUSED=1 $B -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
  done
  ok 200 && { timeout 15 env DFM_CUDA_FUSED=1 $B -r 4 -c dsv3-e32-int8 -t 32 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_int8_$i $?; }
done; done
python3 scripts/ab_means.py -v $L m r > $L/ab_table.txt 2>&1
W=(f p)
for i in 0 1 2; do for k in 0 1; do v=${W[$(( (k + i) % 2 ))]}; F=1; [ $v = p ] && F=0
  for ct in dsv3-e32:1024 dsv3-e256:128 qwen3-235b:128; do
    ok 300 && { timeout 20 env DFM_CUDA_FUSED=$F /tmp/b/m/bench/dfm_bench -r 4 -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/sp_$v.txt 2>&1; st sp_${v}_${ct}_$i $?; }
  done
done; done
cp $L/sp_f.txt $L/ab_f.txt; cp $L/sp_p.txt $L/ab_p.txt; python3 scripts/ab_means.py -v $L f p > $L/sp_table.txt 2>&1; rm -f $L/ab_f.txt $L/ab_p.txt
C="/tmp/b/r/test_moe -b cuda -p threads"
ok 330 && { timeout 70 env DFM_CUDA_FUSED=1 $C > $L/r_fused.txt 2>&1; st r_fused $?; }
ok 380 && { timeout 30 env DFM_CUDA_FUSED=1 $C -o sequence -c 1000 > $L/r_seq1000.txt 2>&1; st r_seq1000 $?; }
ok 400 && { DFM_CUDA_FUSED=1 DFM_TEST_TIMEOUT_S=40 timeout 45 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=fp8,R=1," > $L/r_memcheck.txt 2>&1; st r_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
