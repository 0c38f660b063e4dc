#!/bin/bash
# session 15, call 5: host time of main's library (build-s = main's library code):
# bench/host_cost (C call, pipeline and fused) twice, then the Python host-overhead case
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2; do
  timeout 60 build-s/bench/host_cost >> $L/host_cost.txt 2>&1; st hc_$i $?
  timeout 60 env DFM_CUDA_FUSED=1 build-s/bench/host_cost >> $L/host_cost_fused.txt 2>&1; st hcf_$i $?
done
DFM_LIBRARY=$PWD/build-s/libdfm.so timeout 120 python3 -m pytest -v -rs -s -k "host_overhead" tests/python/test_cuda.py > $L/pytest_host.log 2>&1; st pytest_host $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
