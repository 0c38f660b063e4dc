#!/bin/bash
# Session 25 call 2: combine-ll with ML capped by DFM_COMBINE_LL_ELEMS (1M values:
# dsv3-e32 ML 18, qwen3-235b 32, qwen3-30b 64) on 4 x H100, R=${R:-4}.
# build-c25/bins1.tar.xz: cap/{test_moe,libdfm.so,dfm_bench} = branch combine-ll
# (rebased on main faf5d6a) + the cap; late/dfm_bench = main's kernels (baseline).
# C suite with the fused kernel, A/B (3 rounds), then the whole GPU pytest on cap's library.
source scripts/gpu_env.sh
R=${R:-4}
L=$OUT/v; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt ${GUARD:-200} ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c25/bins1.tar.xz; st untar $?
timeout 90 env DFM_CUDA_FUSED=1 /tmp/b/cap/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
b() { timeout 30 env DFM_CUDA_FUSED=1 "$@"; }
for i in 1 2 3; do
  for c in qwen3-30b-bf16 dsv3-e32 qwen3-235b; do
    ok && { b /tmp/b/late/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_m.txt 2>&1; st ${c}_m_$i $?; }
    ok && { b /tmp/b/cap/dfm_bench -r $R -c $c -t 1,32,128 -s 0 >> $L/ab_cap.txt 2>&1; st ${c}_cap_$i $?; }
  done
done
left=$(( 560 - ($(date +%s) - t0) ))
DFM_LIBRARY=/tmp/b/cap/libdfm.so timeout $left ${PYTHON:-python3} -m pytest -v -rs --durations=10 tests/python/test_cuda.py > $L/pytest.txt 2>&1; st pytest $?
cd $OUT && tar czf v.tgz v && rm -rf v
