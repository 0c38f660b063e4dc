#!/bin/bash
# Session 37, call 3, 4 GPUs or 2 (then dfm_bench -G: 8 experts a rank as at R = 4) (~480 s).
# Carry build-c37/bins51 (m/ = main 6c7509e), bins54 (dr/ = send-dedup 11da2e4: dedup + the
# token-a-thread route) and bins55 (dp/ = send-dedup 73b9607: + each CTA prefetches its next send
# unit's x row into L2; call 2's trace: a send unit takes ~8.4 us at T = 1024 even with every
# store local, R = 1).
# 1. dp's tests: the whole C suite (the route and the send are the pipeline's too), the fused
#    suite with every FP8 call on version 5, the 1000-call sequence with ranks choosing version 5
#    differently (DFM_CUDA_TOK16_ROWS=4), memcheck of the I = 640 FP8 case on version 5, the GPU
#    pytest's kernel numerics in every mode at the GPU count.
# 2. A/B m / dr / dp, three rounds rotated: dsv3-e32 T = 1 .. 1024 (+ INT8), qwen3-235b T = 1 /
#    32 / 128 / 1024, qwen3-30b-bf16 T = 32 / 128; the traces of dr and dp at T = 128 / 1024.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l); [ "$r" -lt 4 ] && export AB_ARGS=-G
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins54 build-c37/bins55; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ok 30 && { timeout 150 /tmp/b/dp/test_moe -b cuda -p threads > $L/dp_all.txt 2>&1; st dp_all $?; }
ok 180 && { DFM_CUDA_TOK16_ROWS=0 timeout 70 /tmp/b/dp/test_moe -b cuda -p threads -o "fused(" > $L/dp_fused_tok16.txt 2>&1
  st dp_fused_tok16 $?; }
ok 250 && { DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=4 timeout 40 /tmp/b/dp/test_moe -b cuda -p threads -o sequence -c 1000 \
  > $L/dp_seq_mixed.txt 2>&1; st dp_seq_mixed $?; }
ok 280 && { DFM_CUDA_TOK16_ROWS=0 DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/dp/test_moe -b cuda -p threads -o "fused(q=fp8,R=2,E=4,H=256,I=640" > $L/dp_memcheck.txt 2>&1
  st dp_memcheck $?; }
ab_rounds 3 430 m dr dp -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32,128,1024 qwen3-30b-bf16:32,128
for v in dr dp; do ok 450 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/$v/dfm_bench -r $r ${AB_ARGS:-} \
  -c dsv3-e32 -t 128,1024 -w 5 -n 20 -s 0 > $L/trace_$v.txt 2>&1; st trace_$v $?; }; done
ok 480 && { DFM_LIBRARY=/tmp/b/dp/libdfm.so timeout 100 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "numerics and kernel and $r" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
