#!/bin/bash
# Session 30 call 2 (prepared in session 29), 4 x H100, a second call (~260 s; guards keep it under 400).
# Carry build-c29. e/ (bins14) = main ca1776a's src/; cla/ (bins17) = branches/claim-ahead.patch
# on main 1de888c (same src/ as ca1776a): fused_help_rows' next claim issued before a chunk's
# rows (a plain add) and the done count's result looked at after the next chunk's, against the
# twenty-eighth session's ncu (dsv3-e32 T = 32: 3.0 % of the stall samples at the barrier behind
# the claim's ATOMG.ADD.64). A/B e / cla, three rounds; cla's fused suite, 1000-call sequence,
# memcheck. If lost: `git am` the patch on 1de888c, `make CUDA=1 WERROR=1`, strip, tar.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for t in build-c29/bins14 build-c29/bins17; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
for i in 1 2 3; do for v in e cla; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 120 && { timeout 20 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L e cla > $L/ab_table.txt 2>&1
C="/tmp/b/cla/test_moe -b cuda -p threads"
ok 150 && { timeout 70 env DFM_CUDA_FUSED=1 $C > $L/cla_fused.txt 2>&1; st cla_fused $?; }
ok 220 && { timeout 30 env DFM_CUDA_FUSED=1 $C -o sequence -c 1000 > $L/cla_seq1000.txt 2>&1; st cla_seq1000 $?; }
ok 250 && { timeout 65 env DFM_CUDA_FUSED=1 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  $C -o "fused(q=fp8,R=2," > $L/cla_memcheck.txt 2>&1; st cla_memcheck $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
