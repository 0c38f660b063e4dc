#!/bin/bash
# session 22, call 3 (R=${R:-4}): binaries in build-c22/bins3.tar.xz (stripped), all from branch
# send-probe-22: p = -DFUSED_PROBE_SEND=1 (stamps inside the first send unit), poll = p with
# -DFUSED_POLL_NS=1000 (__nanosleep in every fused_wait / counts spin), wlate = p with
# -DFUSED_W_EARLY=0 (a GEMM item's weight stages wait for its gate: no HBM traffic of the
# producers while the sends run); n = the branch without probes (main + SEND_PF knob, 0 here).
# Question: is the send unit's ~2.5 us per step (amax, stores) at T = 1 the other CTAs' traffic?
# 1. probe traces at qwen3-235b T = 1 and dsv3-e32 T = 1, 32 with p / poll / wlate (two each).
# 2. layer, three rounds: n / p / poll / wlate at qwen3-235b and dsv3-e32 T = 1,32.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c22/bins3.tar.xz; st untar $?
tr() { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@"; }
for i in 1 2; do
  for c in qwen3-235b:1 dsv3-e32:1 dsv3-e32:32; do
    n=${c%%:*}; t=${c#*:}
    for v in p poll wlate; do
      tr /tmp/b/$v/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/probe_${n}_T${t}_${v}_$i.txt 2>&1; st probe_${n}_T${t}_${v}_$i $?
    done
  done
done
for i in 1 2 3; do
  for c in dsv3-e32 qwen3-235b; do
    for v in n p poll wlate; do
      timeout 30 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c $c -t 1,32 -s 0 > $L/${c}_${v}_$i.txt 2>&1; st ${c}_${v}_$i $?
    done
  done
done
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
