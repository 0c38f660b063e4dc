#!/bin/bash
# Session 30 call 2, 4 x H100 (~280 s; guards keep it under 420). Carry build-c29.
# e/ (bins14) = main ca1776a's src/ (= main now); cla/ (bins17) = branches/claim-ahead.patch
# (prepared in session 29: fused_help_rows' next claim issued before a chunk's rows, the done
# count's result looked at after the next chunk's).
# A/B, three rounds, the variants' order rotated each round (call 1 ran them in one fixed order):
#   e, e0 (RQ_WARPS=0: is call 1's e - e0 = +0.2..+3.3 us at T >= 32 the order?),
#   cla, eA1 (EAGER_RQ=1: no eager requantization of > 16-row experts; call 1's w2, which counts
#   every GEMM1 item on warps 9-11 and so never requantizes eagerly, read qwen3-235b T = 128
#   308.9 against 317.6), e3 (RQ_WARPS=3: > 16-row experts counted by warps 9-11, not eager).
# Then cla's fused suite, 1000-call sequence and memcheck.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for t in build-c29/bins14 build-c29/bins17; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
run() {
  case $1 in
    e) echo "/tmp/b/e/dfm_bench" ;;
    e0) echo "env DFM_CUDA_FUSED_RQ_WARPS=0 /tmp/b/e/dfm_bench" ;;
    e3) echo "env DFM_CUDA_FUSED_RQ_WARPS=3 /tmp/b/e/dfm_bench" ;;
    eA1) echo "env DFM_CUDA_FUSED_EAGER_RQ=1 /tmp/b/e/dfm_bench" ;;
    cla) echo "/tmp/b/cla/dfm_bench" ;;
  esac
}
V=(e e0 cla eA1 e3)
for i in 0 1 2; do for k in 0 1 2 3 4; do v=${V[$(( (k + 2 * i) % 5 ))]}; for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 200 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L e e0 cla eA1 e3 > $L/ab_table.txt 2>&1
C="/tmp/b/cla/test_moe -b cuda -p threads"
ok 230 && { timeout 70 env DFM_CUDA_FUSED=1 $C > $L/cla_fused.txt 2>&1; st cla_fused $?; }
ok 300 && { timeout 30 env DFM_CUDA_FUSED=1 $C -o sequence -c 1000 > $L/cla_seq1000.txt 2>&1; st cla_seq1000 $?; }
ok 330 && { timeout 65 env DFM_CUDA_FUSED=1 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  $C -o "fused(q=fp8,R=2," > $L/cla_memcheck.txt 2>&1; st cla_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
