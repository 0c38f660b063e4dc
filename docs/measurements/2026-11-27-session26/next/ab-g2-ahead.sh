#!/bin/bash
# For the next session (NOT RUN), 4 x H100, one call (~260 s): branches/g2-ahead.patch (GEMM2
# claim-ahead with an L2 prefetch of the claimed item's weights while a GEMM2 gate is closed;
# DFM_CUDA_FUSED_G2_AHEAD stages, 0 off) against main, then its fused C suite and 1000-call
# sequence with it on. Compiled, ptxas clean (no spill, no C7511), not run.
# build-c27: bins1.tar.xz m/ = main 27de2c4; bins2.tar.xz g2a/{libdfm.so,test_moe,dfm_bench} =
# main f008c1d + branches/g2-ahead.patch (stripped `make CUDA=1 WERROR=1` builds).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-250} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for n in 1 2; do tar -C /tmp/b -xJf build-c27/bins$n.tar.xz; done; st untar $?
for i in 1 2 3; do for v in m a0 a12 a24; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  b=/tmp/b/g2a/dfm_bench; n=${v#a}; [ $v = m ] && { b=/tmp/b/m/dfm_bench; n=0; }
  ok && { timeout 20 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_AHEAD=$n $b -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
F="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_AHEAD=12"
timeout 80 $F /tmp/b/g2a/test_moe -b cuda -p threads > $L/g2a_fused.txt 2>&1; st g2a_fused $?
timeout 60 $F /tmp/b/g2a/test_moe -b cuda -p threads -o sequence -c 1000 > $L/g2a_seq1000.txt 2>&1; st g2a_seq1000 $?
cd $OUT && tar czf n.tgz n && rm -rf n
