#!/bin/bash
# session 18, call 2 (nvidia-h100-x1): host cost of the output allocation forms
# (alloc_cost2.py), twice.
L=$OUT/c2; mkdir -p $L
D=docs/measurements/2026-11-27-session18/call2
for i in 1 2; do python3 $D/alloc_cost2.py > $L/alloc_$i.txt 2>&1; done
nproc >> $L/alloc_1.txt
cd $OUT && tar czf c2.tgz c2 && rm -rf c2
