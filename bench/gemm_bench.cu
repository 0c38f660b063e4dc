/*
 * bench/gemm_bench.cu - the GEMM-only benchmark of issue 4 (built by make with
 * CUDA=1 as $(BUILD)/bench/gemm_bench): the expert GEMMs (GEMM1 + SwiGLU
 * epilogue, GEMM2 + bf16 epilogue) alone, at the shapes DeepGEMM was measured
 * on (PERF.md: dsv3 G = 8 at ~32 and ~128 rows per expert, qwen3-235b G = 32
 * at ~8 and ~32, dsv3 G = 64 at ~4), for fp8, int8 and bf16, every kernel
 * version side by side (v3 default, v2 = DFM_CUDA_GEMM=v2).
 *
 * Each row: time (per-launch event medians and back-to-back means), TB/s,
 * time / floor (floor = active experts' weight bytes / device-to-device copy
 * bandwidth of the same run, read + write), and DeepGEMM's recorded FP8
 * figure on H100 beside ours; every result is first checked against a
 * float64 CPU reference. Ends with a markdown table; -o FILE writes CSV.
 *
 *   gemm_bench [-i iters] [-q] [-m modemask] [-s shape] [-v 3|2|32] [-o csv]
 *
 * The code is dev/cuda/gemm_wgmma.cu (the scratch file where versions are
 * developed), included so the two never drift apart.
 */
#include "../dev/cuda/gemm_wgmma.cu"
