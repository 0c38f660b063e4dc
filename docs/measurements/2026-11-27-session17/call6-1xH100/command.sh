#!/bin/bash
# session 17, call 6 (1 GPU): the host cost of allocating fused_deep_moe's output by form.
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L
for i in 1 2; do
  timeout 120 $PYTHON docs/measurements/2026-11-27-session17/call6/alloc_cost.py > $L/alloc_$i.txt 2>&1
done
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
