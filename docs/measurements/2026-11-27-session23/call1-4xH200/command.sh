#!/bin/bash
# session 23, call 1 (4 x H100 wanted; R=${R:-4}): binaries in build-c23/bins1.tar.xz (stripped):
#   m = main's v23 build (build-v23), red = branch arrive-red (FUSED_ARRIVE_RED 1: arrival
#   counts added by every CTA into every rank's region instead of the last CTA's flags).
# 1. fused layer, three rounds: m / red at dsv3-e32, qwen3-235b T = 1,32,128.
# 2. comm cost: m / red at dsv3-e32 T = 32 with and without -L (two rounds).
# 3. traces: m / red at qwen3-235b T = 1 and dsv3-e32 T = 32.
# 4. red: the C suite (fused, pipeline), pytest 1000 graph replays, memcheck fused R = 2.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c1; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c23/bins1.tar.xz; st untar $?
b() { timeout 40 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in dsv3-e32 qwen3-235b; do
    for v in m red; do
      b /tmp/b/$v/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_${v}_$i.txt 2>&1; st ${c}_${v}_$i $?
    done
  done
done
for i in 1 2; do
  for v in m red; do
    b /tmp/b/$v/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 > $L/comm_${v}_$i.txt 2>&1; st comm_${v}_$i $?
    b /tmp/b/$v/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 -L > $L/comm_${v}L_$i.txt 2>&1; st comm_${v}L_$i $?
  done
done
tr() { timeout 40 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@"; }
for c in qwen3-235b:1 dsv3-e32:32; do
  n=${c%%:*}; t=${c#*:}
  for v in m red; do
    tr /tmp/b/$v/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/trace_${n}_T${t}_$v.txt 2>&1; st trace_${n}_$v $?
  done
done
timeout 100 env DFM_CUDA_FUSED=1 /tmp/b/red/test_moe -b cuda -p threads > $L/tm_fused_red.txt 2>&1; st tm_fused_red $?
timeout 100 /tmp/b/red/test_moe -b cuda -p threads > $L/tm_pipe_red.txt 2>&1; st tm_pipe_red $?
DFM_LIBRARY=/tmp/b/red/libdfm.so timeout 150 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/pytest_fused_red.txt 2>&1; st pytest_fused_red $?
timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 /tmp/b/red/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused_red.txt 2>&1; st memcheck_fused_red $?
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
