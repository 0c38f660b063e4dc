#!/bin/bash
# For the next session (NOT RUN), 4 x H100, one call (~520 s): PERF_NOTES "Next session (after the
# twenty-sixth)" item 0: main 5e83435's code (version 5's kernel restored) through run_bench (the
# dsv3-e32 T >= 128 rows should be back at v25's), the per-item trace of qwen3-235b T = 1 (item 1),
# and the whole GPU pytest with room to finish (session 26's 390 s cut its last three cases).
# build-c27/bins1.tar.xz m/{libdfm.so,test_moe,dfm_bench,bench/dfm_bench} = stripped
# `make CUDA=1 WERROR=1` build of main 27de2c4 (if this machine lost it: rebuild and repack).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz; st untar $?
OUT=$L/bench BUILD=/tmp/b/m PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 170 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?
mkdir -p $L/items && timeout 40 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items/it \
  /tmp/b/m/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/items.out 2>&1; st items $?
python3 scripts/fused_items.py "$L/items/it.qwen3-235b.T1.rank*.csv" > $L/items_summary.txt 2>&1
cd $OUT && tar czf n.tgz n && cd - > /dev/null
DFM_LIBRARY=/tmp/b/m/libdfm.so timeout $(( 580 - ($(date +%s) - t0) )) python3 -m pytest -v -rs --durations=10 \
  tests/python/test_cuda.py > $OUT/pytest.txt 2>&1; echo "pytest rc=$?" >> $OUT/pytest.txt
