#!/bin/bash
# Session 34, call 6, 4 GPUs (~130 s; guards keep it under 200: the budget's last minutes).
# Carry build-c34/bins37.tar.xz (m34/ = main f95d565's src) and build-c34/bins39.tar.xz (bit/ =
# branch rq-ahead-bit f396570: RQ_AHEAD 2 before GEMM2 items of experts of >= 768 rows, a bit an
# expert set once a call; call 5's rq-ahead-big counted rows per item from 512 and lost at T = 512
# / 256 / 32).
# 1. A/B m34 / bit (DFM_CUDA_FUSED=1), three rounds rotated. 2. bit's fused C suite and sequence.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
R=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c34/bins37.tar.xz && tar -C /tmp/b -xJf build-c34/bins39.tar.xz; st untar $?
V=(m34 bit)
for i in 0 1 2; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  for ct in dsv3-e32:1,32,128,256,512,768,1024 qwen3-235b:1,32,128; do
    ok 110 && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct%%:*}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
C="/tmp/b/bit/test_moe -b cuda -p threads"
ok 130 && { timeout 60 $C -o "fused(" > $L/bit_fused.txt 2>&1; st bit_fused $?; }
ok 190 && { timeout 20 $C -o sequence -c 1000 > $L/bit_seq1000.txt 2>&1; st bit_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
