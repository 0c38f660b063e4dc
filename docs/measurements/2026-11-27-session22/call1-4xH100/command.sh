#!/bin/bash
# session 22, call 1 (4 x H100 wanted; R=${R:-4}): binaries in build-c22/bins1.tar.xz (stripped):
#   m = main's v22 build (build-v22; c33add9 has the same cubin), tma = main + tma-send.patch
#   (second form), rids = main + reduce-ids.patch, rprobe = main + reduce-probe.patch,
#   g2l = main + g2-local-probe.patch built with -DFUSED_PROBE_G2_LOCAL=1 (wrong results).
# 1. fused layer, three rounds: m / tma (TMA_SEND 0, 1) / rids at dsv3-e32, qwen3-235b T = 1,32,128.
# 2. traces: rprobe REDUCE_PROBE 0-4 and rids and m at dsv3-e32 T = 128 and qwen3-235b T = 1.
# 3. comm cost: m and g2l at dsv3-e32 T = 32 (two rounds, traces) and m with -L.
# 4. pipeline combine: m / rids at dsv3-e32, qwen3-235b T = 128,256 (two rounds).
# 5. suites: fused with TMA_SEND=1 (tma), fused and pipeline with rids.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c1; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c22/bins1.tar.xz; st untar $?
b() { timeout 30 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in dsv3-e32 qwen3-235b; do
    b /tmp/b/m/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_m_$i.txt 2>&1; st ${c}_m_$i $?
    b DFM_CUDA_FUSED_TMA_SEND=0 /tmp/b/tma/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_tma0_$i.txt 2>&1; st ${c}_tma0_$i $?
    b DFM_CUDA_FUSED_TMA_SEND=1 /tmp/b/tma/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_tma1_$i.txt 2>&1; st ${c}_tma1_$i $?
    b /tmp/b/rids/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_rids_$i.txt 2>&1; st ${c}_rids_$i $?
  done
done
tr() { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@"; }
for c in dsv3-e32:128 qwen3-235b:1; do
  n=${c%%:*}; t=${c#*:}
  for p in 0 1 2 3 4; do
    tr DFM_CUDA_FUSED_REDUCE_PROBE=$p /tmp/b/rprobe/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/trace_${n}_T${t}_probe$p.txt 2>&1; st trace_${n}_probe$p $?
  done
  tr /tmp/b/rids/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/trace_${n}_T${t}_rids.txt 2>&1; st trace_${n}_rids $?
  tr /tmp/b/m/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/trace_${n}_T${t}_m.txt 2>&1; st trace_${n}_m $?
done
for i in 1 2; do
  b /tmp/b/m/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 > $L/g2l_m_$i.txt 2>&1; st g2l_m_$i $?
  b /tmp/b/g2l/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 > $L/g2l_probe_$i.txt 2>&1; st g2l_probe_$i $?
  b /tmp/b/m/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 -L > $L/g2l_mL_$i.txt 2>&1; st g2l_mL_$i $?
done
tr /tmp/b/m/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 -w 5 -n 20 > $L/trace_g2l_m.txt 2>&1; st trace_g2l_m $?
tr /tmp/b/g2l/dfm_bench -r $R -c dsv3-e32 -t 32 -s 0 -w 5 -n 20 > $L/trace_g2l_probe.txt 2>&1; st trace_g2l_probe $?
for i in 1 2; do
  for v in m rids; do
    for c in dsv3-e32 qwen3-235b; do
      timeout 30 /tmp/b/$v/dfm_bench -r $R -c $c -t 128,256 -s 0 > $L/pipe_${c}_${v}_$i.txt 2>&1; st pipe_${c}_${v}_$i $?
    done
  done
done
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TMA_SEND=1 /tmp/b/tma/test_moe -b cuda -p threads > $L/tm_fused_tma1.txt 2>&1; st tm_fused_tma1 $?
timeout 100 env DFM_CUDA_FUSED=1 /tmp/b/rids/test_moe -b cuda -p threads > $L/tm_fused_rids.txt 2>&1; st tm_fused_rids $?
timeout 100 /tmp/b/rids/test_moe -b cuda -p threads > $L/tm_pipe_rids.txt 2>&1; st tm_pipe_rids $?
cd $OUT && tar czf c1.tgz c1 && rm -rf c1
