#!/bin/bash
# Session 34, call 4, 4 GPUs (~300 s; guards keep it under 520). Carry build-c34/bins37.tar.xz
# (m34/ = main f95d565's src, qok-fp8 merged).
# 1. The GPU pytest's kernel cases with main's library: the fused numerics at 4 ranks and the
#    1000 graph replays at 2 and 4 ranks.
# 2. FUSED_RQ_AHEAD 0 / 1 (default) / 2 with qok: dsv3-e32 (and -int8) T = 128 .. 1024, qwen3-235b
#    T = 128, three rounds rotated (DFM_CUDA_FUSED_RQ_AHEAD).
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
R=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c34/bins37.tar.xz; st untar $?
DFM_LIBRARY=/tmp/b/m34/libdfm.so timeout 250 python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "replay_1000 or (numerics and kernel and 4)" > $L/pytest.txt 2>&1; st pytest $?
V=(a1 a0 a2)
for i in 0 1 2; do for k in 0 1 2; do v=${V[$(( (k + i) % 3 ))]}
  for ct in dsv3-e32:128,256,512,1024 qwen3-235b:128; do
    ok 480 && { timeout 40 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_AHEAD=${v#a} /tmp/b/m34/dfm_bench -r $R -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct%%:*}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
