# gpu_env.sh - sourced by the scripts that run on the GPU machine
# (scripts/gpu_all.sh, scripts/gpu_profile.sh, bench/run_bench.sh):
#  - never NVLink multicast on the shared machines (DEVICE.md);
#  - the NCCL the library must run with (>= 2.28.7) is torch's: put its lib
#    folder first on LD_LIBRARY_PATH (nvidia/nccl/lib, or in the CUDA 13 wheels
#    any nvidia/*/lib holding libnccl; nvidia.nccl.__file__ is None there).
# Uses $PYTHON (default python3, the one with torch); sets nccl_lib ("" when
# not found, with a warning on stderr).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PYTHON=${PYTHON:-python3}
nccl_lib=$("$PYTHON" -c '
import glob, os, nvidia
libs = [os.path.dirname(f) for p in nvidia.__path__
        for f in sorted(glob.glob(os.path.join(p, "*", "lib", "libnccl.so*")))]
print(libs[0] if libs else "")' 2>/dev/null || true)
if [ -n "$nccl_lib" ] && [ -d "$nccl_lib" ]; then
    export LD_LIBRARY_PATH="$nccl_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
    nccl_lib=""
    echo "gpu_env: torch's NCCL not found with $PYTHON; the system NCCL may be too old (need >= 2.28.7)" >&2
fi
