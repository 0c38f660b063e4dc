#!/bin/bash
# Session 37, call 5: only a 1-GPU kind was lent (~120 s). R = 1 with dfm_bench -G. Carry
# build-c37/bins51 (m/ = main 6c7509e), bins54 (dr/ = send-dedup 11da2e4) and bins56 (rc/ = the
# send-dedup head built with -DDFM_SEND_REGCODES=1: a send unit that is a whole row codes it from
# the amax pass's registers instead of loading the row again; not in version 5's kernel, where
# ptxas then serializes the wgmma). Calls 2 and 3: a send unit takes ~8.5 us at T = 1024 at any
# R, one row a token or eight, so it is latency, not stores; rc takes one load round trip out.
# 1. A/B m / dr / rc, three rounds rotated: dsv3-e32 T = 128 .. 1024 (its prefix runs INT8:
#    rc's rows), qwen3-235b T = 128 / 1024 (FP8 below version 5's line at R = 1: rc's kernel);
#    rc's trace at T = 128 / 1024.
# 2. rc's tests at R = 1: the whole C suite, the GPU pytest's kernel numerics at 1.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
r=$(nvidia-smi -L | wc -l); [ "$r" -lt 4 ] && export AB_ARGS=-G
mkdir -p /tmp/b && for t in build-c37/bins51 build-c37/bins54 build-c37/bins56; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
ab_rounds 3 100 m dr rc -- dsv3-e32:128,256,512,1024 qwen3-235b:128,1024
for v in dr rc; do ok 120 && { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/$v/dfm_bench -r $r ${AB_ARGS:-} \
  -c dsv3-e32 -t 128,1024 -w 5 -n 20 -s 0 > $L/trace_$v.txt 2>&1; st trace_$v $?; }; done
ok 140 && { timeout 60 /tmp/b/rc/test_moe -b cuda -p threads > $L/rc_all.txt 2>&1; st rc_all $?; }
ok 200 && { DFM_LIBRARY=/tmp/b/rc/libdfm.so timeout 60 python3 -m pytest -v -rs tests/python/test_cuda.py \
  -k "numerics and kernel and $r" > $L/pytest.txt 2>&1; st pytest $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
