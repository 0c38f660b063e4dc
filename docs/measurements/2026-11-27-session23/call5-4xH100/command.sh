#!/bin/bash
# session 23, call 5 (4 x H100 wanted; R=${R:-4}): sp = branch send-probe-23 (main + the
# twenty-second session's FUSED_PROBE_SEND stamps) built with -DFUSED_PROBE_SEND=1
# (build-c23/bins5.tar.xz); build-v24 = main's table build. Traces only (timings of the probe
# build are not the library's): where a send unit's time goes at qwen3-30b-bf16 T = 32 (BF16,
# no amax since v24), dsv3-e32 T = 32, qwen3-235b T = 1 / 32; the trace of v24 at
# qwen3-30b-bf16 T = 32.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c5; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c23/bins5.tar.xz; st untar $?
tr() { timeout 40 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@"; }
for c in qwen3-30b-bf16:32 qwen3-30b-bf16:1 dsv3-e32:32 qwen3-235b:1 qwen3-235b:32; do
  n=${c%%:*}; t=${c#*:}
  tr /tmp/b/sp/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/probe_${n}_T$t.txt 2>&1; st probe_${n}_T$t $?
done
tr DFM_CUDA_FUSED_PROBE_TWICE=1 /tmp/b/sp/dfm_bench -r $R -c qwen3-30b-bf16 -t 32 -s 0 -w 5 -n 20 > $L/probe_qwen3-30b-bf16_T32_twice.txt 2>&1; st probe_twice $?
tr build-v24/bench/dfm_bench -r $R -c qwen3-30b-bf16 -t 32 -s 0 -w 5 -n 20 > $L/trace_v24_qwen3-30b-bf16_T32.txt 2>&1; st trace_v24 $?
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
