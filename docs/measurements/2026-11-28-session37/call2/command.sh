#!/bin/bash
# Session 37, call 2, 4 GPUs or 2 (then dfm_bench -G: 8 experts a rank as at R = 4) (~450 s).
# Carry build-c37/bins51 (m/ = main 6c7509e), bins53 (d0/ = send-dedup with the old routing,
# -DDFM_ROUTE_BY_TOKEN=0), bins54 (dr/ = send-dedup 11da2e4: a token a thread in
# dfm_dispatch_route where K <= 8; call 1's trace: routing took 24 us of every CTA at T = 1024).
# 1. dr's tests: the whole C suite (the route is the pipeline's too), the fused suite with every
#    FP8 call on version 5, the mixed-choice sequence, memcheck of the I = 640 FP8 case (version 5),
#    the GPU pytest's kernel numerics in every mode.
# 2. A/B m / d0 / dr, three rounds rotated: dsv3-e32 T = 1 .. 1024 (+ INT8), qwen3-235b T = 1 /
#    32 / 128 / 1024, qwen3-30b-bf16 T = 32 / 128; dr's trace at T = 128 / 1024.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l); [ "$r" -lt 4 ] && export AB_ARGS=-G
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins53 build-c37/bins54; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ok 30 && { timeout 150 /tmp/b/dr/test_moe -b cuda -p threads > $L/dr_all.txt 2>&1; st dr_all $?; }
ok 170 && { DFM_CUDA_TOK16_ROWS=0 timeout 70 /tmp/b/dr/test_moe -b cuda -p threads -o "fused(" > $L/dr_fused_tok16.txt 2>&1
  st dr_fused_tok16 $?; }
ok 230 && { DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=4 timeout 40 /tmp/b/dr/test_moe -b cuda -p threads -o sequence -c 1000 \
  > $L/dr_seq_mixed.txt 2>&1; st dr_seq_mixed $?; }
ok 260 && { DFM_CUDA_TOK16_ROWS=0 DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/dr/test_moe -b cuda -p threads -o "fused(q=fp8,R=2,E=4,H=256,I=640" > $L/dr_memcheck.txt 2>&1
  st dr_memcheck $?; }
ab_rounds 3 420 m d0 dr -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32,128,1024 qwen3-30b-bf16:32,128
ok 440 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/dr/dfm_bench -r $r ${AB_ARGS:-} -c dsv3-e32 \
  -t 128,1024 -w 5 -n 20 -s 0 > $L/trace_dr.txt 2>&1; st trace_dr $?; }
ok 480 && { DFM_LIBRARY=/tmp/b/dr/libdfm.so timeout 100 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "numerics and kernel and $r" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
