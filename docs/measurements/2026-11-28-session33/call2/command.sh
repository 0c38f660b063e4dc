#!/bin/bash
# Session 33, call 2, 4 x H100 (~590 s). Carry build-c32n/bins27.tar.xz and build-c32n/bins28.tar.xz.
# 1. session 32's next/command.sh: FUSED_RQW_MANY_ROWS 16 / 24 / 32 A/B and the winner's tests (<= 420 s).
# 2. the GPU pytest cases call 1's 540 s limit cut off (graph replay 1000 at 4 ranks, the
#    asynchronous-error, timeout, host-overhead and NCCL cases), with bins28's p/ (main's code).
t00=$(date +%s)
bash docs/measurements/2026-11-28-session32/next/command.sh
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32n/bins28.tar.xz
left=$(( 585 - ($(date +%s) - t00) ))
DFM_LIBRARY=/tmp/b/p/libdfm.so timeout $left python3 -m pytest -v -rs --durations=10 tests/python/test_cuda.py \
  -k "replay_1000 or invalid_experts or peer_timeout or host_overhead or nccl_is_torchs" > $OUT/pytest_rest.txt 2>&1
echo "pytest rc=$? limit $left s at $(( $(date +%s) - t00 )) s" >> $OUT/pytest_rest.txt
