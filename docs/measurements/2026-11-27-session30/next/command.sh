#!/bin/bash
# For the next session (NOT RUN), 4 x H100, one call (~330 s; guards keep it under 450).
# Carry build-c30/bins19.tar.xz, build-c30/bins20.tar.xz, build-c30/bins21.tar.xz (files, not the
# whole build-c30: it is over the 64 MB carry limit). Stripped `make CUDA=1 WERROR=1` builds:
#   d/ (bins19) = main 8a0b173's src/ (FUSED_RQ_WARPS 3 the default)
#   i/ (bins20) = branches/int8-keeps-mode4.patch on it: mode 3's > 16-row hand-off for FP8 and
#                 BF16 only, INT8 as mode 4
#   c/ (bins21) = i + branches/rqw-cleanup.patch: modes 1 and 2 removed (1 and 2 read as 0)
# If lost: `git am` the patches on main in that order; build each; strip; tar -cJf (dirs i/, c/).
# 1. A/B d / d4 (d, RQ_WARPS=4) / i / c, four rounds rotated, T = 1, 32, 128: i should read as
#    d on the FP8 / BF16 rows and as d4 on dsv3-e32-int8 (session 30: +1.6 / +3.1 us at T = 32
#    for 3 against 4); c as i (the cleanup changes no path taken by 3 or 4).
# 2. qwen3-235b T = 1 twenty times with d (session 30 saw one 145.5 us run among 76-79 us ones):
#    how often, and on which ranks' phases (the bench's dispatch / gemms / combine columns).
# 3. c's fused suite, 1000-call sequence, memcheck.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for t in build-c30/bins19 build-c30/bins20 build-c30/bins21; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
run() {
  case $1 in
    d) echo "/tmp/b/d/dfm_bench" ;;
    d4) echo "env DFM_CUDA_FUSED_RQ_WARPS=4 /tmp/b/d/dfm_bench" ;;
    i) echo "/tmp/b/i/dfm_bench" ;;
    c) echo "/tmp/b/c/dfm_bench" ;;
  esac
}
V=(d d4 i c)
for i in 0 1 2 3; do for k in 0 1 2 3; do v=${V[$(( (k + i) % 4 ))]}; for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 230 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L d d4 i c > $L/ab_table.txt 2>&1
for r in $(seq 1 20); do
  ok 270 && { timeout 15 env DFM_CUDA_FUSED=1 /tmp/b/d/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 2>&1 | grep -v "^#" >> $L/t1_repeat.txt; }
done; st t1_repeat 0
C="/tmp/b/c/test_moe -b cuda -p threads"
ok 300 && { timeout 70 env DFM_CUDA_FUSED=1 $C > $L/c_fused.txt 2>&1; st c_fused $?; }
ok 370 && { timeout 30 env DFM_CUDA_FUSED=1 $C -o sequence -c 1000 > $L/c_seq1000.txt 2>&1; st c_seq1000 $?; }
ok 400 && { DFM_CUDA_FUSED=1 DFM_TEST_TIMEOUT_S=60 timeout 65 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 $C -o "fused(q=fp8,R=2," > $L/c_memcheck.txt 2>&1; st c_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
