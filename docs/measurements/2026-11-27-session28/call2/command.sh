#!/bin/bash
# Session 28 call 2, 4 x H100 (~380 s; guards keep it under 560): g1-balance (branch g1-balance,
# build-c28/bins8 bal/ = main + the patch, stripped `make CUDA=1 WERROR=1`): GEMM1 items dealt
# round c1 = ceil(n1 / w) CTAs where a call has w = ceil(n1 / grid) <= DFM_CUDA_FUSED_G1_WAVES
# waves of them, the other CTAs starting on GEMM2 items (qwen3-235b T = 1: 192 items, 96 CTAs
# with two each, 36 on GEMM2 from the start, instead of 132 + a second wave of 60).
# A/B m (main 27de2c4, build-c27/bins1) / b0 (bal, off) / b2 / b3, three rounds; item traces of
# qwen3-235b T = 1 with m and b2; bal's fused suite with DFM_CUDA_FUSED_GRID = 3 and 5 (test
# calls then have several waves of GEMM1 items) at G1_WAVES = 64, 1000-call sequence and memcheck
# of the fused FP8 R = 2 cases at GRID = 5.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz && tar -C /tmp/b -xJf build-c28/bins8.tar.xz; st untar $?
run() {
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    b*) echo "env DFM_CUDA_FUSED_G1_WAVES=${1#b} /tmp/b/bal/dfm_bench" ;;
  esac
}
for i in 1 2 3; do for v in m b0 b2 b3; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 200 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
for v in m b2; do
  mkdir -p $L/items_$v && timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items_$v/it \
    $(run $v) -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/items_$v.out 2>&1; st items_$v $?
  python3 scripts/fused_items.py "$L/items_$v/it.qwen3-235b.T1.rank*.csv" > $L/items_${v}_summary.txt 2>&1
done
B="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G1_WAVES=64"
ok 300 && { timeout 80 $B DFM_CUDA_FUSED_GRID=3 /tmp/b/bal/test_moe -b cuda -p threads > $L/bal_g3_fused.txt 2>&1; st bal_g3_fused $?; }
ok 380 && { timeout 80 $B DFM_CUDA_FUSED_GRID=5 /tmp/b/bal/test_moe -b cuda -p threads > $L/bal_g5_fused.txt 2>&1; st bal_g5_fused $?; }
ok 460 && { timeout 30 $B DFM_CUDA_FUSED_GRID=5 /tmp/b/bal/test_moe -b cuda -p threads -o sequence -c 1000 > $L/bal_g5_seq1000.txt 2>&1; st bal_g5_seq1000 $?; }
ok 490 && { timeout 65 $B DFM_CUDA_FUSED_GRID=5 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  /tmp/b/bal/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/bal_g5_memcheck.txt 2>&1; st bal_g5_memcheck $?; }
python3 scripts/ab_means.py -v $L m b0 b2 b3 > $L/ab_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
