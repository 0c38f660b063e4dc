"""Weight helpers: checkpoint tensors to the operator's operands (SPEC section 4).

A checkpoint holds, per rank, the G local experts' ``w13`` [G, 2I, H] (gate
rows 0..I-1, then up rows) and ``w2`` [G, H, I] (out x in), in bf16. The
operator wants

- ``gmm1_permuted_weight``: the seed's logical shape [G, H, 2I], codes, whose
  2I columns are in the permuted gate/up order (tile t of 128 columns = gate
  columns t*64..t*64+63, then up columns t*64..t*64+63). Its memory is
  [G][2I][H] (each output channel K-contiguous), so the tensor is a
  ``transpose(1, 2)`` view with strides (2I*H, 1, H);
- ``gmm1_permuted_weight_scale`` [G, 2I] float32, permuted the same way;
- ``gmm2_weight`` [G, H, I] codes, contiguous, and ``gmm2_weight_scale`` [G, H].

Codes: FP8 E4M3 (torch.float8_e4m3fn, or torch.uint8 bytes where torch has no
float8 dtype), torch.int8, or torch.bfloat16; per-output-channel scales by the
formulas of SPEC 3.1, computed by the C library (dfm_weights_prepare_w13/_w2)
so every backend sees the same bits. bf16 mode returns scales of ones.

The work runs on the host, one thread per expert (the C calls release the
GIL); results are moved to the device of the input tensor.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from . import _lib
from .utils import FP8_DTYPE, parse_quant


def _host_bf16(t, name, dims):
    if not isinstance(t, torch.Tensor):
        raise TypeError("%s: expected a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.dtype != torch.bfloat16:
        raise TypeError("%s: dtype must be torch.bfloat16 (a bf16 checkpoint tensor), got %s"
                        % (name, t.dtype))
    if t.dim() != 3:
        raise ValueError("%s: must be 3-D %s, got shape %s" % (name, dims, tuple(t.shape)))
    return t.detach().to("cpu").contiguous()


def _check_hi(name, hidden, inter):
    if hidden % 128 != 0 or hidden < 128:
        raise ValueError("%s: hidden H = %d must be a positive multiple of 128" % (name, hidden))
    if inter % 64 != 0 or inter < 64:
        raise ValueError("%s: inter I = %d must be a positive multiple of 64" % (name, inter))


def _codes(shape, quant):
    if quant == "bf16":
        return torch.empty(shape, dtype=torch.bfloat16)
    return torch.empty(shape, dtype=torch.int8 if quant == "int8" else torch.uint8)


def _finish_codes(codes, quant, device):
    if quant == "fp8" and FP8_DTYPE != torch.uint8:
        codes = codes.view(FP8_DTYPE)
    return codes.to(device)


def _run_per_expert(fn, src, G, H, I, q, codes, scale, rows_per_expert, src_row_elems,
                    code_row_elems, num_threads):
    src_bytes = src_row_elems * rows_per_expert * src.element_size()
    code_bytes = code_row_elems * rows_per_expert * codes.element_size()
    scale_bytes = rows_per_expert * 4
    sp, cp, fp = src.data_ptr(), codes.data_ptr(), scale.data_ptr()

    def one(g):
        return fn(sp + g * src_bytes, 1, H, I, q, cp + g * code_bytes, fp + g * scale_bytes)

    if num_threads is None:
        num_threads = min(G, os.cpu_count() or 1, 32)
    if num_threads <= 1 or G == 1:
        statuses = [one(g) for g in range(G)]
    else:
        with ThreadPoolExecutor(max_workers=num_threads) as pool:
            statuses = list(pool.map(one, range(G)))
    for st in statuses:
        _lib.check_status(st, fn.__name__)


def prepare_gmm1_weight(w13, quant="fp8", *, num_threads=None):
    """Checkpoint ``w13`` [G, 2I, H] bf16 -> (gmm1_permuted_weight, gmm1_permuted_weight_scale).

    gmm1_permuted_weight has logical shape [G, H, 2I] and memory [G][2I][H]
    (strides (2I*H, 1, H)); the scale is [G, 2I] float32. Both are permuted
    (SPEC section 4) and on w13's device.
    """
    q = parse_quant(quant)
    src = _host_bf16(w13, "w13", "[G, 2I, H]")
    G, N, H = src.shape
    if N % 2:
        raise ValueError("w13: dim 1 must be 2*inter, got %d" % N)
    I = N // 2
    _check_hi("w13", H, I)
    codes = _codes((G, N, H), q)
    scale = torch.empty((G, N), dtype=torch.float32)
    _run_per_expert(_lib.lib().dfm_weights_prepare_w13, src, G, H, I, _lib.QUANT_IDS[q], codes,
                    scale, N, H, H, num_threads)
    dev = w13.device
    return _finish_codes(codes, q, dev).transpose(1, 2), scale.to(dev)


def prepare_gmm2_weight(w2, quant="fp8", *, num_threads=None):
    """Checkpoint ``w2`` [G, H, I] bf16 -> (gmm2_weight [G, H, I] codes, gmm2_weight_scale [G, H])."""
    q = parse_quant(quant)
    src = _host_bf16(w2, "w2", "[G, H, I]")
    G, H, I = src.shape
    _check_hi("w2", H, I)
    codes = _codes((G, H, I), q)
    scale = torch.empty((G, H), dtype=torch.float32)
    _run_per_expert(_lib.lib().dfm_weights_prepare_w2, src, G, H, I, _lib.QUANT_IDS[q], codes,
                    scale, H, I, I, num_threads)
    dev = w2.device
    return _finish_codes(codes, q, dev), scale.to(dev)


def prepare_weights(w13, w2, quant="fp8", *, num_threads=None):
    """Both helpers at once: returns (gmm1_permuted_weight, gmm1_permuted_weight_scale,
    gmm2_weight, gmm2_weight_scale), in fused_deep_moe's argument order."""
    if w13.dim() == 3 and w2.dim() == 3:
        G, N, H = w13.shape
        if tuple(w2.shape) != (G, H, N // 2):
            raise ValueError("w2: shape %s does not match w13 %s: expected [G, H, I] = %s"
                             % (tuple(w2.shape), tuple(w13.shape), (G, H, N // 2)))
    w1, s1 = prepare_gmm1_weight(w13, quant, num_threads=num_threads)
    w2c, s2 = prepare_gmm2_weight(w2, quant, num_threads=num_threads)
    return w1, s1, w2c, s2


def permuted_channel_source(p, inter):
    """The original w13 channel that permuted gmm1 channel ``p`` holds (SPEC section 4)."""
    return _lib.lib().dfm_permuted_channel_source(int(p), int(inter))
