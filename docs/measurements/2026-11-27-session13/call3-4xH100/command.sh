#!/bin/bash
# session 13, call 3 (4 x H100): the whole GPU verification of branch s13a
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
( SKIP_BUILD=1 BUILD=build-c3 SKIP_PYTEST=1 SKIP_BENCH=1 TEST_TIMEOUT=150 DEMO_TIMEOUT=30 OUT=$L/ga bash scripts/gpu_all.sh > $L/gpu_all.out 2>&1; st gpu_all $? ) &
( DFM_LIBRARY=$PWD/build-c3/libdfm.so timeout 330 python3 -m pytest -v -rs tests/python/test_cuda.py > $L/pytest.log 2>&1; st pytest $?
  DFM_LIBRARY=$PWD/build-c3/libdfm.so PYTHONPATH=$PWD/python timeout 90 python3 -m torch.distributed.run --nproc_per_node=4 examples/torch_moe.py > $L/example.log 2>&1; st example $? ) &
wait
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
