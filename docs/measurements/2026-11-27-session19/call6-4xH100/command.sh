#!/bin/bash
# session 19, call 6 (4 x H100): branch tag-counts at its second commit (build-tcc: a thread a count word polled; each count word
# a call sends carries the call's tag, readers poll the words; no counts flag or system fence before the
# first items) against main (build-rqc, rq-chain): layer A/B (three rounds, qwen3-235b and
# dsv3-e32 T = 1, 32, 128), traces at T = 1 and 32; then, only where tag-counts gained, the
# fused suite and memcheck of the fused R = 2 FP8 cases.
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for B in build-rqc build-tcc; do
    for c in qwen3-235b dsv3-e32; do
      timeout 60 env DFM_CUDA_FUSED=1 $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_$i.txt 2>&1; st ${c}_${B}_$i $?
    done
  done
done
for B in build-rqc build-tcc; do
  timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 $B/dfm_bench -r 4 -c qwen3-235b -t 1,32 -s 0 -w 5 -n 20 > $L/trace_qwen3-235b_$B.txt 2>&1; st trace_$B $?
done
# the suites only where build-tcc's T = 1 layer (qwen3-235b + dsv3-e32, all rounds) is >= 3 us under main's
sum_of() { cat $L/qwen3-235b_$1_*.txt $L/dsv3-e32_$1_*.txt | awk '$3 == 1 && $1 ~ /^(qwen3-235b|dsv3-e32)$/ {s += $9} END {print s}'; }
a=$(sum_of build-rqc); b=$(sum_of build-tcc); echo "T=1 sums: main $a tag-counts $b" >> $L/steps.txt
if awk -v a="$a" -v b="$b" 'BEGIN {exit !(b <= a - 3)}'; then
  timeout 150 env DFM_CUDA_FUSED=1 build-tcc/test_moe -b cuda -p threads > $L/tm_fused.txt 2>&1; st tm_fused $?
  timeout 90 env DFM_TEST_TIMEOUT_S=80 DFM_CUDA_FUSED=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-tcc/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused.txt 2>&1; st memcheck_fused $?
fi
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
