#!/bin/bash
# Session 30 call 3, 4 x H100 (~430 s; guards keep it under 520). Carry build-c29 and build-c30.
# e/ (build-c29/bins14) = main ca1776a's src/ (mode 4 the default); n/ (build-c30/bins18) = e +
# the early leave of warps 9-11 extended to rq_warps 3 (they leave at once unless an expert has
# 1..2 or more than 16 rows; call 2: mode 3 left polling cost +1.5 us at qwen3-235b T = 32 and
# gained 5.0 at qwen3-235b T = 128). A/B e / n4 (n, default 4: the edit leaves mode 4 alone) /
# n3 (RQ_WARPS=3) / eA1 (EAGER_RQ=1), three rounds, order rotated; n3's fused suite, 1000-call
# sequence and memcheck; bench/run_bench.sh on n3 (a candidate table).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for t in build-c29/bins14 build-c30/bins18; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
mkdir -p /tmp/b/n/bench && ln -sf /tmp/b/n/dfm_bench /tmp/b/n/bench/dfm_bench
run() {
  case $1 in
    e) echo "/tmp/b/e/dfm_bench" ;;
    eA1) echo "env DFM_CUDA_FUSED_EAGER_RQ=1 /tmp/b/e/dfm_bench" ;;
    n4) echo "/tmp/b/n/dfm_bench" ;;
    n3) echo "env DFM_CUDA_FUSED_RQ_WARPS=3 /tmp/b/n/dfm_bench" ;;
  esac
}
V=(e n4 n3 eA1)
for i in 0 1 2; do for k in 0 1 2 3; do v=${V[$(( (k + i) % 4 ))]}; for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 170 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L e n4 n3 eA1 > $L/ab_table.txt 2>&1
C="env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=3 /tmp/b/n/test_moe -b cuda -p threads"
ok 200 && { timeout 70 $C > $L/n3_fused.txt 2>&1; st n3_fused $?; }
ok 270 && { timeout 30 $C -o sequence -c 1000 > $L/n3_seq1000.txt 2>&1; st n3_seq1000 $?; }
ok 300 && { DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=3 DFM_TEST_TIMEOUT_S=60 timeout 65 compute-sanitizer --tool memcheck \
  --report-api-errors no --error-exitcode 9 /tmp/b/n/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/n3_memcheck.txt 2>&1; st n3_memcheck $?; }
ok 340 && { DFM_CUDA_FUSED_RQ_WARPS=3 OUT=$L/bench BUILD=/tmp/b/n PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 190 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
