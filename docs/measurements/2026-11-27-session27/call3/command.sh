#!/bin/bash
# Session 27, call 3, 4 x H100 (~260 s): branch next-aware (97b768f): DFM_CUDA_FUSED_EAGER_RQ=4
# leaves a few-row expert's requantization to the CTAs with its GEMM2 items when the CTA that
# completed its GEMM1 has a GEMM1 item next (call 2's trace: ~10 us of that CTA's time at
# qwen3-235b T = 1, its next GEMM1 item waiting); the branch's mode 3 = main's but for the
# unclaimed-items load made lazy. A/B m (main 27de2c4) / n3 / n4, three rounds; per-item traces
# of qwen3-235b T = 1 at n3 and n4; the fused C suite at 4 and 5 (5: every few-row expert left
# to the helpers) and the 1000-call sequence at 5.
# build-c27: bins1.tar.xz m/ = main 27de2c4; bins4.tar.xz nx/ = 97b768f (stripped WERROR builds).
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && for n in 1 4; do tar -C /tmp/b -xJf build-c27/bins$n.tar.xz; done; st untar $?
for i in 1 2 3; do for v in m n3 n4; do for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
  b=/tmp/b/nx/dfm_bench; e=${v#n}; [ $v = m ] && { b=/tmp/b/m/dfm_bench; e=3; }
  ok 200 && { timeout 20 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=$e $b -r 4 -c $c -t 1,32,128 -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${c}_$i $?; }
done; done; done
for e in 3 4; do
  mkdir -p $L/items$e && timeout 30 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=$e DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=$L/items$e/it \
    /tmp/b/nx/dfm_bench -r 4 -c qwen3-235b -t 1 -s 0 -w 5 -n 20 > $L/items$e.out 2>&1; st items$e $?
  python3 scripts/fused_items.py "$L/items$e/it.qwen3-235b.T1.rank*.csv" > $L/items${e}_summary.txt 2>&1
done
for e in 4 5; do
  ok 420 && { timeout 80 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=$e /tmp/b/nx/test_moe -b cuda -p threads > $L/rq${e}_fused.txt 2>&1; st rq${e}_fused $?; }
done
ok 500 && { timeout 60 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=5 /tmp/b/nx/test_moe -b cuda -p threads -o sequence -c 1000 > $L/rq5_seq1000.txt 2>&1; st rq5_seq1000 $?; }
cd $OUT && tar czf n.tgz n && rm -rf n
