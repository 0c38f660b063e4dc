#!/bin/bash
# Session 33, call 8, 2 GPUs (the 4-GPU kinds were not lent; ~100 s, the budget's last).
# Carry build-c33/bins34.tar.xz (m/ = main 443b5e5's kernel, q/ = branch qok-cache).
# q's fused C suite (the R = 1 and 2 cases), a 1000-call sequence, then m / q at R = 2,
# two rounds rotated (dsv3-e32 T = 1 / 32 / 128, dsv3-e32-int8 T = 1024): a first look only;
# the 4-GPU A/B is next/command.sh.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c33/bins34.tar.xz; st untar $?
C="/tmp/b/q/test_moe -b cuda -p threads"
timeout 40 $C -o "fused(" > $L/q_fused.txt 2>&1; st q_fused $?
ok 50 && { timeout 10 $C -o sequence -c 1000 > $L/q_seq1000.txt 2>&1; st q_seq1000 $?; }
V=(m q)
for i in 0 1; do for k in 0 1; do v=${V[$(( (k + i) % 2 ))]}
  ok 85 && { timeout 12 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 2 -c dsv3-e32 -t 1,32,128 -n 20 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_$i $?; }
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
