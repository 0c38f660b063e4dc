#!/bin/bash
# Session 34, call 5, 4 GPUs (~170 s; guards keep it under 300: the budget's last minutes).
# Carry build-c34/bins37.tar.xz (m34/ = main f95d565's src) and build-c34/bins38.tar.xz (ab/ =
# branch rq-ahead-big 961abbf: RQ_AHEAD 2 before GEMM2 items of experts of >= 512 rows, else 1).
# 1. A/B m34 / ab (DFM_CUDA_FUSED=1), three rounds rotated.
# 2. ab's fused C suite and 1000-call sequence.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
R=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c34/bins37.tar.xz && tar -C /tmp/b -xJf build-c34/bins38.tar.xz; st untar $?
V=(m34 ab)
for i in 0 1 2; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  for ct in dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32,128; do
    ok 150 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct%%:*}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
C="/tmp/b/ab/test_moe -b cuda -p threads"
ok 200 && { timeout 70 $C -o "fused(" > $L/ab_fused.txt 2>&1; st ab_fused $?; }
ok 270 && { timeout 25 $C -o sequence -c 1000 > $L/ab_seq1000.txt 2>&1; st ab_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
