#!/bin/bash
# Session 27, call 6, 4 x H100 (~90 s): main 27de2c4's build (bins1 m/): the README's torchrun
# example on the 4 GPUs (as scripts/gpu_all.sh runs it), then pytest's host-overhead cases (1 and 2
# ranks) three times, for the spread of Issue 6's host time on this host.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz; st untar $?
timeout 60 env DFM_LIBRARY=/tmp/b/m/libdfm.so PYTHONPATH=$PWD/python python3 -m torch.distributed.run \
  --nproc_per_node=4 examples/torch_moe.py > $L/example.txt 2>&1; st example $?
for i in 1 2 3; do
  ok 150 && { DFM_LIBRARY=/tmp/b/m/libdfm.so timeout 60 python3 -m pytest -s -k host_overhead \
    tests/python/test_cuda.py > $L/host_$i.txt 2>&1; st host_$i $?; }
done
cd $OUT && tar czf n.tgz n && rm -rf n
