#!/bin/bash
# Session 37, call 4, 4 GPUs, or 2 (then dfm_bench -G) (~560 s). Carry build-c37/bins51 (m/ = main
# 6c7509e) and bins57 (d2/, r2/ = send-dedup 30ad50b: version 5 sends a token's codes once to
# each rank that also runs version 5, its alias rows' meta and index written before the block
# max and their scale copied by the receiver; dfm_dispatch_route a token a thread where K <= 8;
# r2 built with -DDFM_SEND_REGCODES=1: a send unit that is a whole row codes it from the amax
# pass's registers, now in version 5's kernel too; call 5, R = 1: INT8 T = 1024 -8.4 us).
# 1. r2's tests: the whole C suite, the fused suite with every FP8 call on version 5, the
#    1000-call sequence with ranks choosing version 5 differently (DFM_CUDA_TOK16_ROWS=4),
#    memcheck of the R = 4, K = 16 FP8 case on version 5 (the route's K > 8 form) and of the
#    R = 2, I = 640 FP8 case on version 5 (whole-row units: the register codes and alias rows).
# 2. A/B m / d2 / r2, three rounds rotated: dsv3-e32 T = 1 .. 1024 (+ INT8), qwen3-235b T = 1 / 32 /
#    128 / 1024, qwen3-30b-bf16 T = 32 / 128; r2's trace at T = 128 / 1024.
# 3. The GPU pytest's kernel numerics at 4 in every mode and the 1000 graph replays at 4, with
#    r2. 4. At 4 GPUs, bench/run_bench.sh with r2: the v37 table.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l); [ "$r" -lt 4 ] && export AB_ARGS=-G
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins57; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ok 30 && { timeout 130 /tmp/b/r2/test_moe -b cuda -p threads > $L/r2_all.txt 2>&1; st r2_all $?; }
ok 160 && { DFM_CUDA_TOK16_ROWS=0 timeout 70 /tmp/b/r2/test_moe -b cuda -p threads -o "fused(" > $L/r2_fused_tok16.txt 2>&1
  st r2_fused_tok16 $?; }
ok 230 && { DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=4 timeout 40 /tmp/b/r2/test_moe -b cuda -p threads -o sequence -c 1000 \
  > $L/r2_seq_mixed.txt 2>&1; st r2_seq_mixed $?; }
ok 250 && { DFM_CUDA_TOK16_ROWS=0 DFM_TEST_TIMEOUT_S=60 timeout 70 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/r2/test_moe -b cuda -p threads -o "fused(q=fp8,R=4,E=16,H=256,I=64,K=16" > $L/r2_memcheck.txt 2>&1
  st r2_memcheck $?; }
ab_rounds 3 240 m d2 r2 -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32,128,1024 qwen3-30b-bf16:32,128
ok 300 && { DFM_CUDA_TOK16_ROWS=0 DFM_TEST_TIMEOUT_S=60 timeout 70 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/r2/test_moe -b cuda -p threads -o "fused(q=fp8,R=2,E=4,H=256,I=640" > $L/r2_memcheck_i640.txt 2>&1
  st r2_memcheck_i640 $?; }
ok 380 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/r2/dfm_bench -r $r ${AB_ARGS:-} -c dsv3-e32 -t 128,1024 \
  -w 5 -n 20 -s 0 > $L/trace_r2.txt 2>&1; st trace_r2 $?; }
ok 390 && { DFM_LIBRARY=/tmp/b/r2/libdfm.so timeout 150 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "(numerics and kernel and $r) or (replay_1000 and $r)" > $L/pytest.txt 2>&1; st pytest $?; }
[ "$r" -ge 4 ] && bench_table r2 530
cd $OUT && tar czf n.tgz n && rm -rf n
