#!/bin/bash
# Session 26 call 2, 4 x H100 (~300 s): traces of qwen3-235b and dsv3-e32 at T = 1 (the local gap
# at T = 1: -L 77.0 / 122.5 us against floors 54.9 / 107.5), and the A/B of the own-expert
# weight prefetch at T = 1 (DFM_CUDA_FUSED_OWN_PF stages; FUSED_OWN_PF_STAGES in fused.cu).
# build-c26: bins5.tar.xz tag/{libdfm.so,test_moe,dfm_bench} = main b0c909c's code (= e782c22 +
#            ll-tag.patch); bins6.tar.xz own/{test_moe,dfm_bench,bench/dfm_bench} = main b0c909c +
#            the own-expert prefetch (the working tree of this commit), stripped
#            `make CUDA=1 WERROR=1` builds.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-330} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for n in 5 6; do tar -C /tmp/b -xJf build-c26/bins$n.tar.xz; done; st untar $?
OUT=$L/tr0 BUILD=/tmp/b/own PF_LIST=0 CONFIGS="qwen3-235b:1 dsv3-e32:1" STEP_TIMEOUT=40 \
  bash scripts/fused_trace.sh > /dev/null 2>&1; st trace0 $?
OUT=$L/tr16 BUILD=/tmp/b/own PF_LIST=0 CONFIGS="qwen3-235b:1 dsv3-e32:1" STEP_TIMEOUT=40 DFM_CUDA_FUSED_OWN_PF=16 \
  bash scripts/fused_trace.sh > /dev/null 2>&1; st trace16 $?
for i in 1 2 3; do for v in tag own0 own8 own16 own32; do for c in dsv3-e32 qwen3-235b qwen3-30b-bf16; do
  b=/tmp/b/${v%%[0-9]*}/dfm_bench; pf=${v#own}; [ "$v" = tag ] && pf=0
  ok && { timeout 20 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_OWN_PF=$pf $b -r 4 -c $c -t 1,32 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
ok && { timeout 70 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_OWN_PF=16 /tmp/b/own/test_moe -b cuda -p threads > $L/own16_fused.txt 2>&1; st own16_fused $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
