#!/bin/bash
# session 22, call 4 (R=${R:-4}): binaries in build-c22/bins4.tar.xz (stripped), from branch
# send-probe-22: p = -DFUSED_PROBE_SEND=1 with finer stamps inside the first send unit (x loaded,
# slot K-1's destination, thread 0's stores, the last thread at the barrier); psh = p with
# -DDFM_SEND_SHFL=1 (the send's first-slot test by warp shuffles instead of a chain of loads);
# n = the branch without probes (main's code + knobs off); nsh = n with -DDFM_SEND_SHFL=1.
# 1. probe traces qwen3-235b T = 1, dsv3-e32 T = 1 / 32: p and psh.
# 2. layer, three rounds: n / nsh at dsv3-e32 and qwen3-235b T = 1,32,128.
# 3. nsh's C suite, fused and pipeline.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c4; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c22/bins4.tar.xz; st untar $?
tr() { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@"; }
for c in qwen3-235b:1 dsv3-e32:1 dsv3-e32:32; do
  n=${c%%:*}; t=${c#*:}
  for v in p psh; do
    tr /tmp/b/$v/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/probe_${n}_T${t}_${v}.txt 2>&1; st probe_${n}_T${t}_${v} $?
  done
done
for i in 1 2 3; do
  for c in dsv3-e32 qwen3-235b; do
    for v in n nsh; do
      timeout 30 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_${v}_$i.txt 2>&1; st ${c}_${v}_$i $?
    done
  done
done
timeout 100 env DFM_CUDA_FUSED=1 /tmp/b/nsh/test_moe -b cuda -p threads > $L/tm_fused_nsh.txt 2>&1; st tm_fused_nsh $?
timeout 100 /tmp/b/nsh/test_moe -b cuda -p threads > $L/tm_pipe_nsh.txt 2>&1; st tm_pipe_nsh $?
cd $OUT && tar czf c4.tgz c4 && rm -rf c4
