#!/bin/bash
# session 19, call 3 (4 x H100): version 5's GEMM1 (tokens widened to f16 once an expert, no
# per-stage widening or barriers) at small T in the fused kernel: DFM_CUDA_TOK16_ROWS=0 against
# the default (96 rows), on main (build-rqc) and on gate-share (build-gsc); gate-share's
# send-late off by environment. Three rounds, qwen3-235b and dsv3-e32 T = 1, 32, 128.
source scripts/gpu_env.sh
L=$OUT/c3; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
for i in 1 2 3; do
  for B in build-rqc build-gsc; do
    for V in def v5 nolate; do
      [ $V = nolate ] && [ $B = build-rqc ] && continue
      E="DFM_CUDA_FUSED=1"; [ $V = v5 ] && E="$E DFM_CUDA_TOK16_ROWS=0"; [ $V = nolate ] && E="$E DFM_CUDA_FUSED_SEND_LATE=0"
      for c in qwen3-235b dsv3-e32; do
        timeout 60 env $E $B/dfm_bench -r 4 -c $c -t 1,32,128 -s 0 > $L/${c}_${B}_${V}_$i.txt 2>&1; st ${c}_${B}_${V}_$i $?
      done
    done
  done
done
cd $OUT && tar czf c3.tgz c3 && rm -rf c3
