#!/bin/bash
# Session 26 call 1: session 25's next/command.sh as written.
# For the next session (NOT RUN), 4 x H100, one call (~260 s): ll-tag's validation and the
# region-size question (PERF_NOTES "Next session (after the twenty-fifth)" items 0, 0b).
# build-c25 (if this machine still has it; else rebuild as named):
#   bins1.tar.xz late/dfm_bench = main faf5d6a (before combine-ll)
#   bins3.tar.xz r/{libdfm.so,test_moe,dfm_bench} = main 7bf34f3 (= a3a4dea's library)
#   bins4.tar.xz ml0/dfm_bench = main 7bf34f3 with CC="gcc -DDFM_COMBINE_LL_ELEMS=0"
#                NVCC="nvcc -DDFM_COMBINE_LL_ELEMS=0" (no combine_ll region, never tagged)
#   bins5.tar.xz tag/{libdfm.so,test_moe,dfm_bench} = main e782c22 + branches/ll-tag.patch
# (each `make CUDA=1 WERROR=1 BUILD=... <targets>`, stripped with strip --strip-debug)
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-230} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for n in 1 3 4 5; do tar -C /tmp/b -xJf build-c25/bins$n.tar.xz; done; st untar $?
timeout 80 env DFM_CUDA_FUSED=1 /tmp/b/tag/test_moe -b cuda -p threads > $L/tag_fused.txt 2>&1; st tag_fused $?
DFM_LIBRARY=/tmp/b/tag/libdfm.so timeout 110 python3 -m pytest -v -rs -k "fused_kernel_graph_replay_1000" tests/python/test_cuda.py > $L/tag_pytest.txt 2>&1; st tag_pytest $?
for i in 1 2 3; do for v in late r ml0 tag; do
  b=/tmp/b/$v/dfm_bench; [ -x $b ] || b=/tmp/b/$v/bench/dfm_bench
  ok && { timeout 20 env DFM_CUDA_FUSED=1 $b -r 4 -c dsv3-e32 -t 1,32 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_$i $?; }
done; done
cd $OUT && tar czf n.tgz n && rm -rf n
