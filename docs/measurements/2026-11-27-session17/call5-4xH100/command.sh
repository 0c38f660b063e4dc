#!/bin/bash
# session 17, call 5 (4 x H100): Issue 6 on main's library (build-m17 = main at 17d1f93,
# kernels as at c3f6ec6 + the dispatch change of the sixteenth session's call 8): the whole
# GPU pytest (tests/python/test_cuda.py: worlds 1, 2, 4; host time per call), the README's
# torchrun example on 4 GPUs, and the main job (dfm_demo) in each mode.
source scripts/gpu_env.sh
L=$OUT/c5; mkdir -p $L
SKIP_BUILD=1 BUILD=build-m17 SKIP_TESTS=1 SKIP_BENCH=1 SKIP_SANITIZER=1 SKIP_EXTRA=1 SKIP_PROMOTE=1 \
  SKIP_FUSED=1 SKIP_TOK16=1 PYTEST_TIMEOUT=450 DEMO_TIMEOUT=40 OUT=$L bash scripts/gpu_all.sh > $L/gpu_all.out 2>&1
echo "gpu_all rc=$?" >> $L/gpu_all.out
cd $OUT && tar czf c5.tgz c5 && rm -rf c5
