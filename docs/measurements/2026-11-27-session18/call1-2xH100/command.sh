#!/bin/bash
# session 18, call 1 (nvidia-h100-x2): fused_deep_moe's spare outputs (branch spare-out,
# Python only; library = build-m17/libdfm.so, main's C code). The new GPU cases and the
# graph cases, then pytest's host_overhead (worlds 1, 2) with the branch's package and
# with main's (ab/python-main, a copy of main's python/), interleaved, twice each.
source scripts/gpu_env.sh
L=$OUT/c1; mkdir -p $L
export DFM_LIBRARY=$PWD/build-m17/libdfm.so
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv > $L/smi.txt
timeout 300 python3 -m pytest -v -rs -k "spare_outputs or graph_capture_replay" tests/python/test_cuda.py > $L/pytest_graph.txt 2>&1
echo "rc=$?" >> $L/pytest_graph.txt
for round in 1 2; do
  timeout 120 python3 -m pytest -q -s -k host_overhead tests/python/test_cuda.py > $L/host_branch_$round.txt 2>&1
  DFM_TEST_INSTALLED=1 PYTHONPATH=$PWD/ab/python-main timeout 120 python3 -m pytest -q -s -k host_overhead \
    tests/python/test_cuda.py > $L/host_main_$round.txt 2>&1
done
grep -h "host overhead\|passed\|failed\|deepfusedmoe:" $L/host_*.txt > $L/host_summary.txt
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
