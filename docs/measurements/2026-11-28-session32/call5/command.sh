#!/bin/bash
# Session 32 call 5, 4 x H100 (~110 s; guards keep it under 130). Carry build-c32/bins25.tar.xz (r/).
# Call 4: EAGER_RQ 0 took dsv3-e32-int8 T = 32 187.2 -> 175.0 us (one round) and 0 / 1 T = 1024
# 1437.8 -> 1395.5 / 1395.8, while 0 cost 6-24 us on FP8 / BF16 at T = 1 / 32. Is INT8 better with
# EAGER_RQ 1 (eager only for experts of <= 16 rows)? d / e1 / e0 at dsv3-e32-int8 T = 1, 32, 128,
# three rounds rotated; then the fused C suite with EAGER_RQ=1 (its INT8 cases, every R).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32/bins25.tar.xz; st untar $?
envof() { case $1 in d) echo "DFM_CUDA_FUSED=1" ;; e0) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=0" ;;
  e1) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=1" ;; esac; }
V=(d e1 e0)
for i in 0 1 2; do for k in 0 1 2; do v=${V[$(( (k + i) % 3 ))]}
  ok 60 && { timeout 15 env $(envof $v) /tmp/b/r/dfm_bench -r 4 -c dsv3-e32-int8 -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_$i $?; }
done; done
python3 scripts/ab_means.py -v $L d e1 e0 > $L/ab_table.txt 2>&1
ok 75 && { timeout 50 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=1 /tmp/b/r/test_moe -b cuda -p threads -o "q=int8" > $L/e1_int8_suite.txt 2>&1; st e1_suite $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
