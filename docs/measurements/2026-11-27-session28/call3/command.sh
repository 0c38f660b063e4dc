#!/bin/bash
# Session 28 call 3, 4 x H100 (~330 s, ~520 with the table; guards keep it under 580): widen-mix
# (branch widen-mix, build-c28/bins9 wid/ = main + the patch, stripped `make CUDA=1 WERROR=1`):
# the f16 path's weight codes of K-half 1 widened by integer operations (PRMT, two LOP3, LEA.HI,
# then HMUL2 x 256), K-half 0 by cvt as before, so the conversion unit (16 codes a clock an SM)
# carries half the codes. Calls 1-2's traces: a GEMM1 item streams at ~34 GB/s an SM where
# ~60 CTAs stream (the second wave at qwen3-235b T = 1), consumer-bound.
# A/B fused m (main 27de2c4, build-c27/bins1) / wid, three rounds; GEMM-only FP8 (gemm_bench
# -q -m 1 -v l) main (m28) / wid twice; wid's fused and pipeline C suites, fused and pipeline
# 1000-call sequences, memcheck of the fused FP8 R = 2 cases; if wid gains, bench/run_bench.sh on it.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c27/bins1.tar.xz && tar -C /tmp/b -xJf build-c28/bins9.tar.xz; st untar $?
for i in 1 2 3; do for v in m wid; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  ok 120 && { timeout 20 env DFM_CUDA_FUSED=1 /tmp/b/$v/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
python3 scripts/ab_means.py -v $L m wid > $L/ab_table.txt 2>&1
for i in 1 2; do for v in m28 wid; do
  ok 200 && { timeout 45 /tmp/b/$v/gemm_bench -q -m 1 -v l > $L/gemm_${v}_$i.txt 2>&1; st gemm_${v}_$i $?; }
done; done
W=/tmp/b/wid/test_moe
ok 260 && { timeout 75 env DFM_CUDA_FUSED=1 $W -b cuda -p threads > $L/wid_fused.txt 2>&1; st wid_fused $?; }
ok 330 && { timeout 75 $W -b cuda -p threads > $L/wid_pipeline.txt 2>&1; st wid_pipeline $?; }
ok 400 && { timeout 30 env DFM_CUDA_FUSED=1 $W -b cuda -p threads -o sequence -c 1000 > $L/wid_fused_seq1000.txt 2>&1; st wid_fused_seq1000 $?; }
ok 430 && { timeout 30 $W -b cuda -p threads -o sequence -c 1000 > $L/wid_pipeline_seq1000.txt 2>&1; st wid_pipeline_seq1000 $?; }
ok 460 && { timeout 65 env DFM_CUDA_FUSED=1 DFM_TEST_TIMEOUT_S=60 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
  $W -b cuda -p threads -o "fused(q=fp8,R=2," > $L/wid_memcheck.txt 2>&1; st wid_memcheck $?; }
# the table on wid only where it gains: qwen3-235b or dsv3-e32 T = 1 at least 1 us faster, no row 2 us slower
gain=$(python3 - "$L/ab_table.txt" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l[:1].isalpha() and not l.startswith("config")]
d = {(r[0], r[1]): (float(r[3]), float(r[4])) for r in rows if len(r) >= 5}
win = any(d.get((c, "1"), (0, 0))[1] <= d.get((c, "1"), (0, 0))[0] - 1 for c in ("qwen3-235b", "dsv3-e32"))
lose = any(w > m + 2 for m, w in d.values())
print(1 if win and not lose else 0)
PY
)
echo "gain=$gain" >> $L/steps.txt
[ "$gain" = 1 ] && ok 380 && { OUT=$L/bench BUILD=/tmp/b/wid PYTHON=python3 BENCH_TIMEOUT=100 TORCH_TIMEOUT=80 timeout 190 bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
