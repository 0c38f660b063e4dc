#!/bin/bash
# For the next session (NOT RUN), 4 GPUs, one call (~450 s). Carry build-c36/bins49 (i8/ = main
# 3feafec's kernels: its fused.o SASS) and build-c36/bins50 (dd/ = send-dedup c6fd36b: version 5
# sends a token's codes once to each rank that also runs version 5 in the call, the other rows
# naming that row; compiled without spills, never run on a GPU). If lost: build main (i8) and
# send-dedup (dd) with `make CUDA=1 WERROR=1 BUILD=build-X -j16 build-X/libdfm.so
# build-X/tests/test_moe build-X/bench/dfm_bench`, strip --strip-debug, tar -cJf.
# Expected (PERF_NOTES, after the thirty-sixth): the sends at T = 1024 (~153 us, ~8 rows a token,
# 6 over NVLink) down toward ~3.7 rows a token: ~-70 us at T = 1024, ~-35 at T = 512.
# 1. dd's tests first: the fused C suite with every FP8 call on version 5 (DFM_CUDA_TOK16_ROWS=0,
#    so every rank sends one row a rank); a 1000-call sequence with T random per rank and the line
#    at 4 rows (DFM_CUDA_TOK16_ROWS=4: ranks choose differently within a call); the default suite
#    (version 5 off in the tests: the src_info word only); memcheck of the I = 640 FP8 cases on
#    version 5; the GPU pytest's FP8 kernel numerics at 4 on version 5.
# 2. A/B i8 / dd, three rounds rotated, dsv3-e32 T = 1 .. 1024 (its prefix runs INT8 too) and
#    qwen3-235b T = 1 / 32 (every kernel now writes src_info's new word); the trace of dd at
#    T = 512 / 1024.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in build-c36/bins49 build-c36/bins50; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ok 60 && { DFM_CUDA_TOK16_ROWS=0 timeout 70 /tmp/b/dd/test_moe -b cuda -p threads -o "fused(" > $L/dd_fused_tok16.txt 2>&1
  st dd_fused_tok16 $?; }
ok 120 && { DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=4 timeout 40 /tmp/b/dd/test_moe -b cuda -p threads -o sequence -c 1000 \
  > $L/dd_seq_mixed.txt 2>&1; st dd_seq_mixed $?; }
fused_suite dd 150
ok 200 && { DFM_CUDA_TOK16_ROWS=0 DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
  --error-exitcode 9 /tmp/b/dd/test_moe -b cuda -p threads -o "fused(q=fp8,R=2,E=4,H=256,I=640" > $L/dd_memcheck.txt 2>&1
  st dd_memcheck $?; }
ab_rounds 3 350 i8 dd -- dsv3-e32:1,32,128,256,512,1024 qwen3-235b:1,32
ok 360 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/dd/dfm_bench -r 4 -c dsv3-e32 -t 512,1024 \
  -w 5 -n 20 -s 0 > $L/trace_dd.txt 2>&1; st trace_dd $?; }
ok 400 && { DFM_CUDA_TOK16_ROWS=0 DFM_LIBRARY=/tmp/b/dd/libdfm.so timeout 150 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "numerics and kernel and 4 and fp8" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
