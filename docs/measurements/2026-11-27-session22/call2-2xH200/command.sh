#!/bin/bash
# session 22, call 2 (4 x H100 wanted; R=${R:-4}): binaries in build-c22/bins2.tar.xz (stripped):
#   n = branch send-probe-22 built plainly (main with reduce-ids + DFM_CUDA_FUSED_SEND_PF: the
#       first send unit's x row prefetched into L1 before the route; its GEMM loops are main's);
#   p = the same with -DFUSED_PROBE_SEND=1 (stamps inside the first send unit: amax, stores,
#       fence, atomic; DFM_CUDA_FUSED_PROBE_TWICE=1 runs the units a second time, stamped).
# 1. layer A/B, three rounds: n with SEND_PF 0 / 1 at dsv3-e32, qwen3-235b T = 1,32,128.
# 2. probe traces at qwen3-235b T = 1, dsv3-e32 T = 1, 32: PF 0/1 x TWICE 0/1, and -L.
# 3. the fused suite with SEND_PF=1.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/c2; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c22/bins2.tar.xz; st untar $?
b() { timeout 30 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in dsv3-e32 qwen3-235b; do
    for v in 0 1; do
      b DFM_CUDA_FUSED_SEND_PF=$v /tmp/b/n/dfm_bench -r $R -c $c -t 1,32,128 -s 0 > $L/${c}_pf${v}_$i.txt 2>&1; st ${c}_pf${v}_$i $?
    done
  done
done
tr() { timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 "$@"; }
for c in qwen3-235b:1 dsv3-e32:1 dsv3-e32:32; do
  n=${c%%:*}; t=${c#*:}
  for v in 0 1; do
    for tw in 0 1; do
      tr DFM_CUDA_FUSED_SEND_PF=$v DFM_CUDA_FUSED_PROBE_TWICE=$tw /tmp/b/p/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 > $L/probe_${n}_T${t}_pf${v}_tw$tw.txt 2>&1; st probe_${n}_T${t}_pf${v}_tw$tw $?
    done
  done
  tr /tmp/b/p/dfm_bench -r $R -c $n -t $t -s 0 -w 5 -n 20 -L > $L/probe_${n}_T${t}_L.txt 2>&1; st probe_${n}_T${t}_L $?
done
timeout 100 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SEND_PF=1 /tmp/b/n/test_moe -b cuda -p threads > $L/tm_fused_pf1.txt 2>&1; st tm_fused_pf1 $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
