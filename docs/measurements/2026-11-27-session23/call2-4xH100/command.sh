#!/bin/bash
# session 23, call 2 (4 x H100 wanted; R=${R:-4}): binaries in build-c23/bins2.tar.xz (stripped):
#   m = main's v23 build (build-v23); red2 = branch arrive-red's second form (each count word in
#   its own 128-byte line; the local atomic before the remote adds); spw = branch spec-wide
#   built with -DFUSED_SPEC_PF_WIDE=1 (the first item's weight prefetch also at 80-160 rows).
# 1. fused layer, three rounds: m / red2 at dsv3-e32, qwen3-235b T = 1,32,128.
# 2. spec prefetch, three rounds: dsv3-e32 T = 128: m, spw with SPEC_PF 8 / 16 / 24;
#    qwen3-235b T = 128: m with SPEC_PF 8 / 16 / 24.
# 3. traces: red2 at qwen3-235b T = 1 and dsv3-e32 T = 32; the C suite with red2 (fused).
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c2; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c23/bins2.tar.xz; st untar $?
b() { timeout 40 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in dsv3-e32 qwen3-235b; do
    for v in m red2; do
      b /tmp/b/$v/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_${v}_$i.txt 2>&1; st ${c}_${v}_$i $?
    done
  done
done
for i in 1 2 3; do
  b /tmp/b/m/dfm_bench -r $R -c dsv3-e32 -t 128 -s 0 > $L/spf_dsv3_m_$i.txt 2>&1; st spf_dsv3_m_$i $?
  for p in 8 16 24; do
    b DFM_CUDA_FUSED_SPEC_PF=$p /tmp/b/spw/dfm_bench -r $R -c dsv3-e32 -t 128 -s 0 > $L/spf_dsv3_spw${p}_$i.txt 2>&1; st spf_dsv3_spw${p}_$i $?
    b DFM_CUDA_FUSED_SPEC_PF=$p /tmp/b/m/dfm_bench -r $R -c qwen3-235b -t 128 -s 0 > $L/spf_qwen_m${p}_$i.txt 2>&1; st spf_qwen_m${p}_$i $?
  done
done
tr() { timeout 40 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@"; }
for c in qwen3-235b:1 dsv3-e32:32; do
  n=${c%%:*}; t=${c#*:}
  tr /tmp/b/red2/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/trace_${n}_T${t}_red2.txt 2>&1; st trace_${n}_red2 $?
done
timeout 100 env DFM_CUDA_FUSED=1 /tmp/b/red2/test_moe -b cuda -p threads > $L/tm_fused_red2.txt 2>&1; st tm_fused_red2 $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
