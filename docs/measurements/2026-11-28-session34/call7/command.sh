#!/bin/bash
# Session 34, call 7, 4 GPUs (~100 s; guards keep it under 115: the budget's last seconds).
# Carry build-c34/bins37.tar.xz (m34/ = main f95d565's src) and build-c34/bins40.tar.xz (bit2/ =
# branch rq-ahead-bit2 b30d05d: RQ_AHEAD 2 before GEMM2 items of experts of >= 960 rows, a bit an
# expert set by a thread an expert (call 6: one thread a word of 32, serially, lost 2-5 us at
# qwen3-235b; its 768-row line lost 10.6 at T = 768).
# 1. A/B m34 / bit2 (DFM_CUDA_FUSED=1), three rounds rotated. 2. bit2's fused C suite and sequence.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
R=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c34/bins37.tar.xz && tar -C /tmp/b -xJf build-c34/bins40.tar.xz; st untar $?
V=(m34 bit2)
for i in 0 1 2; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  for ct in dsv3-e32:1,32,128,768,1024 qwen3-235b:1,32,128; do
    ok 50 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct%%:*}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
C="/tmp/b/bit2/test_moe -b cuda -p threads"
ok 55 && { timeout 45 $C -o "fused(" > $L/bit2_fused.txt 2>&1; st bit2_fused $?; }
ok 100 && { timeout 12 $C -o sequence -c 1000 > $L/bit2_seq1000.txt 2>&1; st bit2_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
