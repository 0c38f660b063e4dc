#!/bin/bash
# Device-side driver of the CUDA self-checks (dev scratch): NCCL from torch,
# no NVLink multicast, every program under its own timeout, logs to $OUT.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
NL=$(python3 -c 'import nvidia.nccl as m;print(list(m.__path__)[0])')/lib
export LD_LIBRARY_PATH=$NL:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
OUT=${OUT:-/tmp}
nvidia-smi -L
for step in "$@"; do
  echo "=== $step"
  eval "$step" 2>&1 | tee -a $OUT/checks.log | grep -v "^    contexts" | tail -60
done
