#!/bin/bash
# Session 33, call 1, 4 x H100: what ran (carry build-c32n/bins28.tar.xz), the script session 32
# prepared; its output (pytest.txt, example.txt, smi.txt) is beside this file.
bash docs/measurements/2026-11-28-session32/next/command3.sh
