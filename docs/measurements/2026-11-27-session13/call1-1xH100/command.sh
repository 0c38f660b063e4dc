#!/bin/bash
# session 13, call 1 (1 x H100): gemm_bench A/B (v5-cluster, bench-gemm2-out) + host overhead
source scripts/gpu_env.sh
L=$OUT/l; mkdir -p $L
B=build-dev/bench/gemm_bench; C=build-cand/bench/gemm_bench
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm --format=csv > $L/smi.txt 2>&1
( time $C -q -m 1 -v m ) > $L/cand_m_checks.txt 2>&1
( time $B -q -m 1 -v 3l ) > $L/main_3l.txt 2>&1
( time $C -q -m 1 -v 3lm ) > $L/cand_3lm.txt 2>&1
$B -q -m 1 -s 1 -v l > $L/main_l_s1_b.txt 2>&1
$C -q -m 1 -s 1 -v lm > $L/cand_lm_s1_b.txt 2>&1
( time timeout 200 env DFM_LIBRARY=$PWD/build-dev/libdfm.so python3 -m pytest -v -s -k host_overhead tests/python/test_cuda.py ) > $L/host1.txt 2>&1
( time timeout 200 env DFM_LIBRARY=$PWD/build-dev/libdfm.so python3 -m pytest -v -s -k host_overhead tests/python/test_cuda.py ) > $L/host2.txt 2>&1
cd $OUT && tar czf l.tgz l && rm -rf l
