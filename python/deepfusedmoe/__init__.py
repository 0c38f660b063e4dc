"""DeepFusedMoE: one expert-parallel MoE layer (dispatch + grouped GEMM + SwiGLU +
grouped GEMM + combine) as one collective operator, over libdfm.so (ctypes).

    import deepfusedmoe as dfm
    buf = dfm.Buffer(group, num_max_dispatch_tokens_per_rank, hidden, num_experts, inter=I)
    w1, s1, w2, s2 = dfm.prepare_weights(w13, w2_ckpt, "fp8")
    out, event, hook = buf.fused_deep_moe(x, topk_idx, topk_weights, w1, s1, w2, s2,
                                          num_max_dispatch_tokens_per_rank, num_experts)

Semantics: SPEC.md of the project (section 3); C API: include/dfm.h.
"""
from ._lib import (DFMAsyncError, DFMError, DFMInvalidArgumentError, DFMOutOfMemoryError,
                   DFMTimeoutError, library_path, loaded_nccl)
from .buffer import Buffer, LowLatencyHandle, get_buffer_size_hint
from .utils import FP8_DTYPE, HAS_FLOAT8, EventOverlap, code_dtype, noop_hook
from .weights import (permuted_channel_source, prepare_gmm1_weight, prepare_gmm2_weight,
                      prepare_weights)

__version__ = "0.2.0"


def library_version():
    """DFM_VERSION of the loaded libdfm.so (major*10000 + minor*100 + patch)."""
    from . import _lib
    return _lib.lib().dfm_get_version()


__all__ = [
    "Buffer", "EventOverlap", "LowLatencyHandle", "get_buffer_size_hint",
    "prepare_weights", "prepare_gmm1_weight", "prepare_gmm2_weight", "permuted_channel_source",
    "DFMError", "DFMAsyncError", "DFMInvalidArgumentError", "DFMTimeoutError",
    "DFMOutOfMemoryError", "FP8_DTYPE", "HAS_FLOAT8", "code_dtype", "noop_hook",
    "library_path", "library_version", "loaded_nccl", "__version__",
]
