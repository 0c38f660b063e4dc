"""The test oracle of SPEC section 3, in torch, independent of the library.

Quantization follows SPEC 3.1 exactly (fp32 amax, fp32 divisions, round to
nearest even, E4M3 "fn" with saturation to 448); everything else is computed
in float64. The E4M3 encoder here is written differently from the library's
bit-level one: it rounds against a table of the 127 non-negative finite E4M3
values, so the two check each other.
"""
import torch

FP8_MAX = 448.0
INT8_MAX = 127.0


def _e4m3_table():
    vals = []
    for c in range(0x7F):  # non-negative finite codes 0x00..0x7e, increasing
        e, m = c >> 3, c & 7
        vals.append(m * 2.0 ** -9 if e == 0 else (1.0 + m / 8.0) * 2.0 ** (e - 7))
    return torch.tensor(vals, dtype=torch.float64)


E4M3_POS = _e4m3_table()
assert E4M3_POS[-1] == 448.0


def e4m3_decode(codes):
    """uint8 codes -> float64 values (0x7f / 0xff are NaN)."""
    c = codes.to(torch.int64)
    mag = c & 0x7F
    v = E4M3_POS[mag.clamp(max=0x7E)]
    v = torch.where(mag == 0x7F, torch.full_like(v, float("nan")), v)
    return torch.where((c & 0x80) != 0, -v, v)


def e4m3_encode(v32):
    """float32 values -> uint8 E4M3 codes: round to nearest even, saturate to +-448."""
    assert v32.dtype == torch.float32
    a = v32.abs().to(torch.float64).clamp(max=FP8_MAX)
    hi = torch.searchsorted(E4M3_POS, a.contiguous()).clamp(max=0x7E)
    lo = (hi - 1).clamp(min=0)
    d_lo = a - E4M3_POS[lo]
    d_hi = E4M3_POS[hi] - a
    take_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    code = torch.where(take_hi, hi, lo)
    code = code | (torch.signbit(v32).to(torch.int64) << 7)
    return code.to(torch.uint8)


def quantize_rows(v32, mode):
    """Per-row quantization of a float32 [N, K] tensor (SPEC 3.1).

    Returns (codes, scales): codes uint8 (fp8), int8 (int8) or bfloat16 (bf16);
    scales float32 [N] (ones for bf16)."""
    assert v32.dtype == torch.float32 and v32.dim() == 2
    if mode == "bf16":
        return v32.to(torch.bfloat16), torch.ones(v32.shape[0], dtype=torch.float32)
    qmax = torch.tensor(FP8_MAX if mode == "fp8" else INT8_MAX, dtype=torch.float32)
    amax = v32.abs().amax(dim=1) if v32.shape[1] else torch.zeros(v32.shape[0])
    s = amax / qmax  # fp32 division
    zero = s == 0
    q = v32 / torch.where(zero, torch.ones_like(s), s)[:, None]  # fp32 division
    if mode == "fp8":
        codes = e4m3_encode(q)
    else:
        codes = torch.round(q).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)  # half to even
    codes = torch.where(zero[:, None], torch.zeros_like(codes), codes)
    return codes, s


def code_values(codes, mode):
    """Codes -> float64 values (before scaling)."""
    if mode == "fp8":
        return e4m3_decode(codes.view(torch.uint8) if codes.dtype != torch.uint8 else codes)
    return codes.to(torch.float64)


def dequantize(codes, scales, mode):
    return code_values(codes, mode) * scales.to(torch.float64)[..., None]


def quantize_weights(w, mode):
    """Checkpoint weights [G, N, K] bf16 -> (codes [G, N, K], scales [G, N]), per output
    channel over K, in the checkpoint's (logical, unpermuted) channel order."""
    G, N, K = w.shape
    codes, s = quantize_rows(w.reshape(G * N, K).float(), mode)
    return codes.reshape(G, N, K), s.reshape(G, N)


def permutation(inter):
    """perm[p] = original w13 channel held by permuted channel p (SPEC section 4)."""
    p = torch.arange(2 * inter)
    t, h, c = p // 128, (p % 128) // 64, p % 64
    return h * inter + t * 64 + c


def silu(z):
    return z / (1.0 + torch.exp(-z))


# Relative distance from a rounding boundary within which an act value (over
# its scale) counts as ambiguous at SPEC 3.1 step 5: an fp32 evaluation that
# sums in another order may round it to the neighbouring code, which SPEC 3.3
# allows ("may flip a code"). 2^-16 is some 100 x the fp32 error of the sums.
FLIP_EPS = 2.0 ** -16


def _step5_values(r, mode):
    """float32 r (act / scale; bf16: act) -> the float64 value it rounds to."""
    if mode == "fp8":
        return e4m3_decode(e4m3_encode(r))
    if mode == "int8":
        return torch.round(r).clamp(-INT8_MAX, INT8_MAX).double()
    return r.to(torch.bfloat16).double()


def _flips(act32, sb, mode):
    """[T, I]: how far each act value may move (in code units) if it flips."""
    zero = sb == 0
    r = act32 if mode == "bf16" else act32 / torch.where(zero, torch.ones_like(sb), sb)[:, None]
    v = _step5_values(r, mode)
    lo = _step5_values((r.double() * (1 - FLIP_EPS)).float(), mode)
    hi = _step5_values((r.double() * (1 + FLIP_EPS)).float(), mode)
    f = torch.maximum((lo - v).abs(), (hi - v).abs())
    return torch.where(zero[:, None], torch.zeros_like(f), f)


def expert_outputs(x, w13, w2, mode, flips=None):
    """y[e, t] = FFN_e(x[t]) for every expert e of w13/w2 and every token, per SPEC 3.2.

    x [T, H] bf16; w13 [E, 2I, H], w2 [E, H, I] checkpoint bf16. Returns float64
    [E, T, H] (the bf16-rounded y values). flips: a list that receives, per expert,
    [T, H] bounds of what legitimate act code flips (FLIP_EPS) can move y by."""
    E = w13.shape[0]
    I = w2.shape[2]
    qa, sa = quantize_rows(x.float(), mode)
    a = dequantize(qa, sa, mode)  # [T, H]
    c1, s1 = quantize_weights(w13, mode)
    c2, s2 = quantize_weights(w2, mode)
    ys = []
    for e in range(E):
        h = a @ (code_values(c1[e], mode).T) * s1[e].double()[None, :]  # [T, 2I]
        g, u = h[:, :I], h[:, I:]
        act = (silu(g) * u).to(torch.float32)  # act is fp32 (SPEC 3.2 step 4)
        act32 = act
        if mode == "bf16":
            act = act.to(torch.bfloat16).float()
        qb, sb = quantize_rows(act, mode)
        b = dequantize(qb, sb, mode)
        y = b @ (code_values(c2[e], mode).T) * s2[e].double()[None, :]
        if flips is not None:
            sbd = sb.double() if mode != "bf16" else torch.ones(sb.shape, dtype=torch.float64)
            f = _flips(act32, sb, mode) * sbd[:, None]
            flips.append(f @ code_values(c2[e], mode).abs().T * s2[e].double().abs()[None, :])
        ys.append(y.to(torch.float32).to(torch.bfloat16).double())
    return torch.stack(ys) if ys else torch.zeros(0, x.shape[0], x.shape[1], dtype=torch.float64)


def expert_outputs_unquantized(x, w13, w2):
    """The float64 math without any quantization (sanity reference)."""
    I = w2.shape[2]
    xd = x.double()
    ys = []
    for e in range(w13.shape[0]):
        h = xd @ w13[e].double().T
        act = silu(h[:, :I]) * h[:, I:]
        ys.append(act @ w2[e].double().T)
    return torch.stack(ys)


def combine(y, topk_idx, topk_weights, num_experts):
    """out[t] = sum over k with a valid expert of w[t,k] * y[e, t] (float64).
    Slots of -1 or outside [0, E) contribute nothing; duplicates count per slot."""
    T, K = topk_idx.shape
    out = torch.zeros(T, y.shape[2], dtype=torch.float64)
    for t in range(T):
        for k in range(K):
            e = int(topk_idx[t, k])
            if 0 <= e < num_experts:
                out[t] += float(topk_weights[t, k]) * y[e, t]
    return out


def combine_flips(flips, topk_idx, topk_weights, num_experts):
    """The per-token bound of combine() for the flips of expert_outputs: sum of |w| * flips."""
    if not flips:  # no experts: nothing can flip
        return None
    return combine(torch.stack(flips), topk_idx, topk_weights.abs(), num_experts)


def check(out, ref, amb, tol):
    """SPEC 3.3's check with the flips it allows: (rel L2 error, the bound it is held
    to: tol + ||amb|| / ||ref||)."""
    err = rel_l2(out, ref)
    n = ref.double().norm()
    extra = (amb.double().norm() / n).item() if amb is not None and n > 0 else 0.0
    return err, tol + extra


def rel_l2(out, ref):
    out, ref = out.double(), ref.double()
    if ref.numel() == 0:
        return 0.0
    n = ref.norm()
    if n == 0:
        return 0.0 if out.abs().max().item() == 0 else float("inf")
    return ((out - ref).norm() / n).item()


# SPEC 3.3 tolerances: (against the oracle, against unquantized float64 math)
TOLERANCE = {"bf16": (5e-3, 1e-2), "fp8": (1e-2, 0.1), "int8": (1e-2, 0.1)}
