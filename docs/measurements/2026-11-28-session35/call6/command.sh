#!/bin/bash
# Session 35, call 6, 4 GPUs (~60 s; guards keep it under 100: the budget's last seconds). Carry
# build-c35/bins41.tar.xz (m35/ = main 068d7ee) and build-c35/bins44.tar.xz (nl/ = main 9bb82e3's
# kernel). The fused kernel's phase trace (DFM_CUDA_FUSED_TRACE=1: per-CTA stamps of the last
# call, medians / maxima over CTAs per rank, on stderr) at dsv3-e32 and dsv3-e32-int8 T = 512 /
# 1024, before and after the background requantization: where T = 1024's time goes now.
source scripts/call_env.sh # gpu_env.sh; L, st, ok; smi.txt
mkdir -p /tmp/b && for t in 41 44; do tar -C /tmp/b -xJf build-c35/bins$t.tar.xz; done; st untar $?
for w in m35 nl; do
  ok 90 && { timeout 40 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 /tmp/b/$w/dfm_bench -r 4 -c dsv3-e32 -t 512,1024 \
    -w 5 -n 20 -s 0 > $L/trace_$w.txt 2>&1; st trace_$w $?; }
done
cd $OUT && tar czf n.tgz n && rm -rf n
