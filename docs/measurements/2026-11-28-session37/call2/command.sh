#!/bin/bash
# Session 37, call 2: only a 1-GPU kind was lent (~200 s). R = 1 with dfm_bench -G (8 experts, as
# a rank at R = 4; every send local). Carry build-c37/bins51 (m/ = main 6c7509e), bins53 (d0/ =
# send-dedup 11da2e4 built with -DDFM_ROUTE_BY_TOKEN=0: the old routing), bins54 (dr/ =
# send-dedup 11da2e4: a token a thread in dfm_dispatch_route where K <= 8; call 1's trace:
# routing took 24 us of every CTA at T = 1024). The routing is the same work at any R.
# 1. A/B m / d0 / dr, three rounds rotated: dsv3-e32 T = 1 .. 1024 (+ INT8), qwen3-235b T = 1 /
#    32 / 128 / 1024; the traces of m and dr at T = 128 / 1024 (where a send unit's time goes
#    with local stores only).
# 2. dr's tests at R = 1: the whole C suite (the route is the pipeline's too), the fused suite
#    with every FP8 call on version 5, the GPU pytest's kernel numerics at 1.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l); [ "$r" -lt 4 ] && export AB_ARGS=-G
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins53 build-c37/bins54; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ab_rounds 3 150 m d0 dr -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32,128,1024
for v in m dr; do ok 170 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/$v/dfm_bench -r $r ${AB_ARGS:-} \
  -c dsv3-e32 -t 128,1024 -w 5 -n 20 -s 0 > $L/trace_$v.txt 2>&1; st trace_$v $?; }; done
ok 190 && { timeout 100 /tmp/b/dr/test_moe -b cuda -p threads > $L/dr_all.txt 2>&1; st dr_all $?; }
ok 260 && { DFM_CUDA_TOK16_ROWS=0 timeout 40 /tmp/b/dr/test_moe -b cuda -p threads -o "fused(" > $L/dr_fused_tok16.txt 2>&1
  st dr_fused_tok16 $?; }
ok 290 && { DFM_LIBRARY=/tmp/b/dr/libdfm.so timeout 100 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "numerics and kernel and $r" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
