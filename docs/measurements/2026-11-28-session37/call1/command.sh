#!/bin/bash
# Session 37, call 1, 4 GPUs or 2 (then dfm_bench -G: 8 experts a rank as at R = 4) (~520 s). Carry build-c37/bins51 (m/ = main 6c7509e's kernels) and
# build-c37/bins52 (dd/ = branch send-dedup: version 5 sends a token's codes once to each rank
# that also runs version 5 in the call, the token's other rows there naming that row; session
# 36's branch of that name was lost with its checkout and was rewritten, see PERF_NOTES).
# Expected (PERF_NOTES, after the thirty-sixth): the sends at T = 1024 (~153 us, 8 rows a token,
# 6 over NVLink) down toward ~3.7 rows a token: ~-70 us at T = 1024, ~-35 at T = 512.
# 1. dd's tests: the fused C suite with every FP8 call on version 5 (DFM_CUDA_TOK16_ROWS=0: every
#    rank dedups to every rank); a 1000-call sequence with T random per rank and the line at 4
#    rows (DFM_CUDA_TOK16_ROWS=4: ranks choose differently within a call); the default suite;
#    memcheck of the I = 640 FP8 case on version 5.
# 2. A/B m / dd, three rounds rotated, dsv3-e32 T = 1 .. 1024 (its prefix runs INT8 too) and
#    qwen3-235b T = 1 / 32; dd's trace at T = 512 / 1024.
# 3. The GPU pytest's FP8 kernel numerics at the GPU count on version 5.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l); [ "$r" -lt 4 ] && export AB_ARGS=-G
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins52; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ok 60 && { DFM_CUDA_TOK16_ROWS=0 timeout 70 /tmp/b/dd/test_moe -b cuda -p threads -o "fused(" > $L/dd_fused_tok16.txt 2>&1
  st dd_fused_tok16 $?; }
ok 120 && { DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=4 timeout 40 /tmp/b/dd/test_moe -b cuda -p threads -o sequence -c 1000 \
  > $L/dd_seq_mixed.txt 2>&1; st dd_seq_mixed $?; }
fused_suite dd 150
ok 200 && { DFM_CUDA_TOK16_ROWS=0 DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/dd/test_moe -b cuda -p threads -o "fused(q=fp8,R=2,E=4,H=256,I=640" > $L/dd_memcheck.txt 2>&1
  st dd_memcheck $?; }
ab_rounds 3 350 m dd -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32
ok 380 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/dd/dfm_bench -r $r ${AB_ARGS:-} -c dsv3-e32 -t 512,1024 \
  -w 5 -n 20 -s 0 > $L/trace_dd.txt 2>&1; st trace_dd $?; }
ok 420 && { DFM_CUDA_TOK16_ROWS=0 DFM_LIBRARY=/tmp/b/dd/libdfm.so timeout 150 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "numerics and kernel and $r and fp8" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
