#!/bin/bash
# Session 37, call 4, 4 GPUs (~560 s). Carry build-c37/bins51 (m/ = main 6c7509e), bins54 (dr/ =
# send-dedup 11da2e4: version 5 sends a token's codes once to each rank that also runs version 5;
# dfm_dispatch_route a token a thread where K <= 8; the branch head's default build is dr's
# SASS) and bins56 (rc/ = send-dedup 356fe0e built with -DDFM_SEND_REGCODES=1: a send unit that is a
# whole row codes it from the amax pass's registers, no second load; not in version 5's kernel).
# 1. rc's tests at 4 (rc = dr + the register codes; call 5, R = 1: INT8 T = 1024 -8.4 us): the
#    whole C suite, the fused suite with every FP8 call on version 5, the 1000-call sequence with
#    ranks choosing version 5 differently (DFM_CUDA_TOK16_ROWS=4), memcheck of the R = 4, K = 16
#    FP8 case on version 5 (the route's K > 8 form, a token's 16 slots over 4 ranks) and of the
#    R = 2, I = 640 INT8 case (whole-row units: the register codes).
# 2. A/B m / dr / rc, three rounds rotated: dsv3-e32 T = 1 .. 1024 (+ INT8), qwen3-235b T = 1 / 32 /
#    128 / 1024, qwen3-30b-bf16 T = 32 / 128; rc's trace at T = 128 / 1024.
# 3. The GPU pytest's kernel numerics at 4 in every mode and the 1000 graph replays at 4, with
#    rc. 4. bench/run_bench.sh with rc: the v37 table.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l)
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins54 build-c37/bins56; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ok 30 && { timeout 130 /tmp/b/rc/test_moe -b cuda -p threads > $L/rc_all.txt 2>&1; st rc_all $?; }
ok 160 && { DFM_CUDA_TOK16_ROWS=0 timeout 70 /tmp/b/rc/test_moe -b cuda -p threads -o "fused(" > $L/rc_fused_tok16.txt 2>&1
  st rc_fused_tok16 $?; }
ok 230 && { DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=4 timeout 40 /tmp/b/rc/test_moe -b cuda -p threads -o sequence -c 1000 \
  > $L/rc_seq_mixed.txt 2>&1; st rc_seq_mixed $?; }
ok 250 && { DFM_CUDA_TOK16_ROWS=0 DFM_TEST_TIMEOUT_S=60 timeout 70 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/rc/test_moe -b cuda -p threads -o "fused(q=fp8,R=4,E=16,H=256,I=64,K=16" > $L/rc_memcheck.txt 2>&1
  st rc_memcheck $?; }
ab_rounds 3 240 m dr rc -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32,128,1024 qwen3-30b-bf16:32,128
ok 300 && { DFM_TEST_TIMEOUT_S=60 timeout 70 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/rc/test_moe -b cuda -p threads -o "fused(q=int8,R=2,E=4,H=256,I=640" > $L/rc_memcheck_int8.txt 2>&1
  st rc_memcheck_int8 $?; }
ok 380 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/rc/dfm_bench -r $r -c dsv3-e32 -t 128,1024 \
  -w 5 -n 20 -s 0 > $L/trace_rc.txt 2>&1; st trace_rc $?; }
ok 390 && { DFM_LIBRARY=/tmp/b/rc/libdfm.so timeout 150 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "(numerics and kernel and $r) or (replay_1000 and $r)" > $L/pytest.txt 2>&1; st pytest $?; }
bench_table rc 530
cd $OUT && tar czf n.tgz n && rm -rf n
