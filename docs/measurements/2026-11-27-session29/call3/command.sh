#!/bin/bash
# Session 29 call 3, 4 x H100 (~420 s; guards keep it under 560). build-c27/bins1 m/ = main
# 27de2c4; build-c29/bins14 e/ = the merge candidate: cnt-warps with mode 4 the default
# (DFM_CUDA_FUSED_RQ_WARPS=4: a GEMM1 item of an expert of <= 2 rows is counted, and the
# completed expert requantized, by warps 9-11; they leave at once when the call has no such
# expert). A/B m / e / e0 (e with DFM_CUDA_FUSED_RQ_WARPS=0), three rounds; e's fused suite,
# 1000-call sequence and memcheck; then bench/run_bench.sh on e (the v29 table).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for t in build-c27/bins1 build-c29/bins14; do tar -C /tmp/b -xJf $t.tar.xz; done; st untar $?
mkdir -p /tmp/b/e/bench && ln -sf /tmp/b/e/dfm_bench /tmp/b/e/bench/dfm_bench
run() {
  case $1 in
    m) echo "/tmp/b/m/dfm_bench" ;;
    e) echo "/tmp/b/e/dfm_bench" ;;
    e0) echo "env DFM_CUDA_FUSED_RQ_WARPS=0 /tmp/b/e/dfm_bench" ;;
  esac
}
for i in 1 2 3; do for v in m e e0; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 170 && { timeout 20 env DFM_CUDA_FUSED=1 $(run $v) -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L m e e0 > $L/ab_table.txt 2>&1
C="/tmp/b/e/test_moe -b cuda -p threads"
ok 200 && { timeout 70 env DFM_CUDA_FUSED=1 $C > $L/e_fused.txt 2>&1; st e_fused $?; }
ok 270 && { timeout 30 env DFM_CUDA_FUSED=1 $C -o sequence -c 1000 > $L/e_seq1000.txt 2>&1; st e_seq1000 $?; }
ok 300 && { timeout 65 env DFM_CUDA_FUSED=1 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  $C -o "fused(q=fp8,R=2," > $L/e_memcheck.txt 2>&1; st e_memcheck $?; }
ok 360 && { OUT=$L/bench BUILD=/tmp/b/e PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 190 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
