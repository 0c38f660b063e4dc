#!/bin/bash
# Session 26 call 3, one H100: what a launch like the fused kernel's costs beyond its work
# (bench/launch_probe.cu; build-c26p/launch_probe = stripped `make CUDA=1 WERROR=1` build of it).
L=$OUT/n; mkdir -p $L
nvidia-smi -L > $L/smi.txt
for i in 1 2; do timeout 60 build-c26p/launch_probe 50 >> $L/probe.txt 2>&1; echo "rc=$?" >> $L/probe.txt; done
cd $OUT && tar czf n.tgz n && rm -rf n
