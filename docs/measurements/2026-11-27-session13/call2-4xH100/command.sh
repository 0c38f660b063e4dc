#!/bin/bash
# session 13, call 2 (4 x H100): launch keys + one-fence A/B, host overhead A/B, nvlink bench
source scripts/gpu_env.sh
D=build-c2; L=$OUT/c2; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
timeout 150 $D/tests/test_moe -b cuda -p threads > $L/tm_pipe.txt 2>&1; st tm_pipe $?
timeout 150 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_ONE_FENCE=1 $D/tests/test_moe -b cuda -p threads > $L/tm_fused1.txt 2>&1; st tm_fused1 $?
timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_ONE_FENCE=1 $D/tests/test_moe -b cuda -p threads -o sequence -c 1000 > $L/tm_seq_fused1.txt 2>&1; st seq_fused1 $?
timeout 60 $D/tests/test_moe -b cuda -p threads -o sequence -c 1000 > $L/tm_seq_pipe.txt 2>&1; st seq_pipe $?
for i in 1 2; do
  for f in 0 1; do
    timeout 90 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_ONE_FENCE=$f $D/bench/dfm_bench -r 4 -c dsv3-e32 -t 1,32 -s 0 > $L/fb_dsv3_f${f}_$i.txt 2>&1; st fb_dsv3_f${f}_$i $?
    timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_ONE_FENCE=$f $D/bench/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 > $L/fb_qwen_f${f}_$i.txt 2>&1; st fb_qwen_f${f}_$i $?
  done
done
for lib in libdfm_main.so libdfm.so libdfm_main.so libdfm.so; do
  timeout 120 env DFM_LIBRARY=$PWD/$D/$lib python3 -m pytest -v -s -k host_overhead tests/python/test_cuda.py 2>&1 | grep -E "host overhead|passed|failed" >> $L/host_$lib.txt; st host_$lib $?
done
timeout 90 $D/bench/nvlink_bench -s 32 > $L/nvlink.txt 2>&1; st nvlink $?
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
