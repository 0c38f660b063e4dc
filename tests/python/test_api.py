"""One-rank tests in the pytest process: every bad tensor is refused with an
exception naming the argument before anything is launched, the weight helpers
match the oracle bit for bit, the size hint, signatures, and the per-call host
overhead (measured and printed, not asserted)."""
import inspect
import math

import pytest
import torch

import deepfusedmoe as dfm
import dfm_oracle as oracle
import host_overhead

H, I, E, M, K = 256, 128, 4, 8, 3


@pytest.fixture(scope="module")
def buf(world1):
    b = dfm.Buffer(None, M, H, E, inter=I, max_topk=K)
    yield b
    b.destroy()


@pytest.fixture(scope="module")
def weights():
    g = torch.Generator().manual_seed(7)
    w13 = (torch.randn(E, 2 * I, H, generator=g) / math.sqrt(H)).to(torch.bfloat16)
    w2 = (torch.randn(E, H, I, generator=g) / math.sqrt(I)).to(torch.bfloat16)
    return w13, w2, {q: dfm.prepare_weights(w13, w2, q) for q in ("fp8", "int8", "bf16")}


def _inputs(T=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=g).to(torch.bfloat16)
    idx = torch.rand(T, E, generator=g).topk(K, dim=1).indices
    w = torch.rand(T, K, generator=g)
    return x, idx, w


class _CountingFn:
    """Stands in for a C entry point and counts calls (nothing may be launched)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


# ---- signatures ---------------------------------------------------------------------------

def test_fused_deep_moe_signature_is_the_seeds():
    params = list(inspect.signature(dfm.Buffer.fused_deep_moe).parameters.values())[1:]
    names = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert names == ["x", "topk_idx", "topk_weights", "gmm1_permuted_weight",
                     "gmm1_permuted_weight_scale", "gmm2_weight", "gmm2_weight_scale",
                     "num_max_dispatch_tokens_per_rank", "num_experts", "use_fp8"]
    use_fp8 = inspect.signature(dfm.Buffer.fused_deep_moe).parameters["use_fp8"].default
    assert use_fp8 == True and bool(use_fp8) is True and repr(use_fp8) == "True"  # noqa: E712
    kw = [p.name for p in params if p.kind == p.KEYWORD_ONLY]
    assert {"quant", "async_finish", "return_recv_hook", "ep_recv_count"} <= set(kw)


def test_low_latency_signatures_are_deepeps():
    d = list(inspect.signature(dfm.Buffer.low_latency_dispatch).parameters)[1:12]
    assert d == ["x", "topk_idx", "num_max_dispatch_tokens_per_rank", "num_experts",
                 "cumulative_local_expert_recv_stats", "dispatch_wait_recv_cost_stats",
                 "use_fp8", "round_scale", "use_ue8m0", "async_finish", "return_recv_hook"]
    c = list(inspect.signature(dfm.Buffer.low_latency_combine).parameters)[1:]
    assert c[:10] == ["x", "topk_idx", "topk_weights", "handle", "use_logfmt", "zero_copy",
                      "async_finish", "return_recv_hook", "out", "combine_wait_recv_cost_stats"]


# ---- the fused operator on one rank --------------------------------------------------------

@pytest.mark.parametrize("mode", ["fp8", "int8", "bf16"])
def test_fused_one_rank_matches_oracle(buf, weights, mode):
    w13, w2, prepared = weights
    x, idx, w = _inputs(T=M)
    idx[2, 1] = -1
    idx[3, :] = -1
    out = torch.full((M, H), float("nan"), dtype=torch.bfloat16)
    ep = torch.zeros(E, dtype=torch.int32)
    res, event, hook = buf.fused_deep_moe(x, idx, w, *prepared[mode], M, E, quant=mode,
                                          ep_recv_count=ep, out=out)
    assert res is out and isinstance(event, dfm.EventOverlap) and hook() is None
    event.current_stream_wait()
    with event:
        pass
    flips = []
    ref = oracle.combine(oracle.expert_outputs(x, w13, w2, mode, flips), idx, w, E)
    err, allowed = oracle.check(out, ref, oracle.combine_flips(flips, idx, w, E), oracle.TOLERANCE[mode][0])
    assert err <= allowed
    assert (out[3] == 0).all()
    want = torch.tensor([sum(1 for t in range(M) if e in idx[t].tolist()) for e in range(E)],
                        dtype=torch.int32)
    assert torch.equal(ep, want)


def test_zero_tokens(buf, weights):
    _, _, prepared = weights
    x = torch.empty(0, H, dtype=torch.bfloat16)
    idx = torch.empty(0, K, dtype=torch.int64)
    w = torch.empty(0, K)
    out, _, _ = buf.fused_deep_moe(x, idx, w, *prepared["fp8"], M, E)
    assert out.shape == (0, H) and out.dtype == torch.bfloat16


def test_debug_flag_checks_expert_ids(world1, weights):
    _, _, prepared = weights
    b = dfm.Buffer(None, M, H, E, inter=I, max_topk=K, debug=True)
    try:
        x, idx, w = _inputs()
        idx[1, 2] = E
        with pytest.raises(ValueError, match=r"topk_idx: entry \(1, 2\) = 4 is outside"):
            b.fused_deep_moe(x, idx, w, *prepared["fp8"], M, E)
    finally:
        b.destroy()


def test_quant_modes_of_buffer(world1, weights):
    _, _, prepared = weights
    b = dfm.Buffer(None, M, H, E, inter=I, max_topk=K, quant_modes=("fp8",))
    try:
        x, idx, w = _inputs()
        b.fused_deep_moe(x, idx, w, *prepared["fp8"], M, E)
        with pytest.raises(ValueError, match="'bf16' was not among the buffer's quant_modes"):
            b.fused_deep_moe(x, idx, w, *prepared["bf16"], M, E, use_fp8=False)
    finally:
        b.destroy()


@pytest.mark.parametrize("path", ["default", "kernel", "pipeline"])
def test_path_on_cpu(world1, weights, path):
    """config.path is accepted on the CPU backend, which has one way (reported as the
    pipeline), and the call still matches the oracle."""
    w13, w2, prepared = weights
    b = dfm.Buffer(None, M, H, E, inter=I, max_topk=K, path=path)
    try:
        assert b.path == path and b.path_taken == "pipeline"
        assert "path='pipeline'" in repr(b)
        x, idx, w = _inputs()
        out, _, _ = b.fused_deep_moe(x, idx, w, *prepared["bf16"], M, E, quant="bf16")
        flips = []
        ref = oracle.combine(oracle.expert_outputs(x, w13, w2, "bf16", flips), idx, w, E)
        err, allowed = oracle.check(out, ref, oracle.combine_flips(flips, idx, w, E),
                                    oracle.TOLERANCE["bf16"][0])
        assert err <= allowed
    finally:
        b.destroy()


def test_destroyed_buffer(world1, weights):
    b = dfm.Buffer(None, M, H, E, inter=I, max_topk=K)
    b.destroy()
    b.destroy()  # idempotent
    x, idx, w = _inputs()
    with pytest.raises(RuntimeError, match="destroyed"):
        b.fused_deep_moe(x, idx, w, *weights[2]["fp8"], M, E)


def test_bad_buffer_config(world1):
    with pytest.raises(ValueError, match="hidden: 100"):
        dfm.Buffer(None, M, 100, E, inter=I)
    with pytest.raises(ValueError, match="max_topk: 17"):
        dfm.Buffer(None, M, H, E, inter=I, max_topk=17)
    with pytest.raises(ValueError, match="num_max_dispatch_tokens_per_rank: 2000"):
        dfm.Buffer(None, 2000, H, E, inter=I)
    with pytest.raises(ValueError, match="backend"):
        dfm.Buffer(None, M, H, E, inter=I, backend="tpu")
    with pytest.raises(ValueError, match="quant_modes"):
        dfm.Buffer(None, M, H, E, inter=I, quant_modes=("fp4",))
    with pytest.raises(ValueError, match="path: 'fast' is not 'default', 'kernel' or 'pipeline'"):
        dfm.Buffer(None, M, H, E, inter=I, path="fast")


# ---- bad arguments ----------------------------------------------------------------------------

def _bad_cases(prepared):
    """(name, kwargs-modifier, exception, message regex)."""
    w1, s1, w2, s2 = prepared["fp8"]
    T = 5
    xf = torch.randn(T, H)
    return [
        ("x dtype", dict(x=xf), TypeError, r"^x: dtype must be torch.bfloat16"),
        ("x not a tensor", dict(x=xf.numpy()), TypeError, r"^x: expected a torch.Tensor"),
        ("x 1-D", dict(x=xf[0].bfloat16()), ValueError, r"^x: must be 2-D"),
        ("x hidden", dict(x=torch.zeros(T, H + 128, dtype=torch.bfloat16)), ValueError,
         r"^x: shape must be \[T, hidden\] = \(5, 256\), got \(5, 384\)"),
        ("x strides", dict(x=torch.zeros(H, T, dtype=torch.bfloat16).t()), ValueError,
         r"^x: must be contiguous"),
        ("x device", dict(x=torch.zeros(T, H, dtype=torch.bfloat16, device="meta")),
         ValueError, r"^x: must be on the buffer's device cpu, got meta"),
        ("T > num_max", dict(x=torch.zeros(M + 1, H, dtype=torch.bfloat16),
                             topk_idx=torch.zeros(M + 1, K, dtype=torch.int64),
                             topk_weights=torch.zeros(M + 1, K)), ValueError,
         r"^x: T = 9 tokens exceeds num_max_dispatch_tokens_per_rank = 8"),
        ("topk_idx dtype", dict(topk_idx=torch.zeros(T, K, dtype=torch.int32)), TypeError,
         r"^topk_idx: dtype must be torch.int64"),
        ("topk_idx rows", dict(topk_idx=torch.zeros(T + 1, K, dtype=torch.int64)), ValueError,
         r"^topk_idx: shape must be"),
        ("K > max_topk", dict(topk_idx=torch.zeros(T, K + 1, dtype=torch.int64),
                              topk_weights=torch.zeros(T, K + 1)), ValueError,
         r"^topk_idx: num_topk = 4 is outside 1..max_topk = 3"),
        ("topk_idx strides", dict(topk_idx=torch.zeros(K, T, dtype=torch.int64).t()),
         ValueError, r"^topk_idx: must be contiguous"),
        ("topk_weights dtype", dict(topk_weights=torch.zeros(T, K, dtype=torch.float64)),
         TypeError, r"^topk_weights: dtype must be torch.float32"),
        ("topk_weights shape", dict(topk_weights=torch.zeros(T, K + 1)), ValueError,
         r"^topk_weights: shape must be"),
        ("gmm1 memory layout", dict(gmm1_permuted_weight=w1.contiguous()), ValueError,
         r"^gmm1_permuted_weight: strides must be \(65536, 1, 256\)"),
        ("gmm1 dtype", dict(gmm1_permuted_weight=w1.to(torch.bfloat16)), TypeError,
         r"^gmm1_permuted_weight: dtype must be"),
        ("gmm1 shape", dict(gmm1_permuted_weight=w1[:, :, :128]), ValueError,
         r"^gmm1_permuted_weight: shape must be \[G, hidden, 2\*inter\] = \(4, 256, 256\)"),
        ("gmm1 not a tensor", dict(gmm1_permuted_weight=None), TypeError,
         r"^gmm1_permuted_weight: expected a torch.Tensor"),
        ("gmm1 scale dtype", dict(gmm1_permuted_weight_scale=s1.double()), TypeError,
         r"^gmm1_permuted_weight_scale: dtype"),
        ("gmm1 scale shape", dict(gmm1_permuted_weight_scale=s1[:, :128]), ValueError,
         r"^gmm1_permuted_weight_scale: shape must be \[G, 2\*inter\]"),
        ("gmm1 scale None in fp8", dict(gmm1_permuted_weight_scale=None), ValueError,
         r"^gmm1_permuted_weight_scale: required in fp8 mode"),
        ("gmm2 dtype", dict(gmm2_weight=w2.view(torch.int8)), TypeError,
         r"^gmm2_weight: dtype must be"),
        ("gmm2 strides", dict(gmm2_weight=w2.transpose(1, 2).contiguous().transpose(1, 2)),
         ValueError, r"^gmm2_weight: must be contiguous"),
        ("gmm2 shape", dict(gmm2_weight=w2[:2]), ValueError,
         r"^gmm2_weight: shape must be \[G, hidden, inter\] = \(4, 256, 128\)"),
        ("gmm2 scale shape", dict(gmm2_weight_scale=s2.t()), ValueError,
         r"^gmm2_weight_scale: shape must be"),
        ("gmm2 scale None", dict(gmm2_weight_scale=None), ValueError,
         r"^gmm2_weight_scale: required in fp8 mode"),
        ("num_max", dict(num_max_dispatch_tokens_per_rank=M + 1), ValueError,
         r"^num_max_dispatch_tokens_per_rank: 9 differs from the buffer's 8"),
        ("num_experts", dict(num_experts=E * 2), ValueError,
         r"^num_experts: 8 differs from the buffer's 4"),
        ("use_fp8=False with quant=fp8", dict(use_fp8=False, quant="fp8"), ValueError,
         r"quant='fp8' contradicts use_fp8=False"),
        ("use_fp8=True with quant=bf16", dict(use_fp8=True, quant="bf16"), ValueError,
         r"quant='bf16' contradicts use_fp8=True"),
        ("use_fp8=True with quant=int8", dict(use_fp8=True, quant="int8"), ValueError,
         r"quant='int8' contradicts use_fp8=True"),
        ("unknown quant", dict(quant="int4"), ValueError, r"quant: 'int4' is not one of"),
        ("fp8 weights in int8 mode", dict(quant="int8"), TypeError,
         r"^gmm1_permuted_weight: dtype must be torch.int8 for mode 'int8'"),
        ("return_recv_hook", dict(return_recv_hook=True), NotImplementedError,
         r"return_recv_hook=True is not supported"),
        ("ep_recv_count dtype", dict(ep_recv_count=torch.zeros(E, dtype=torch.int64)), TypeError,
         r"^ep_recv_count: dtype must be torch.int32"),
        ("ep_recv_count shape", dict(ep_recv_count=torch.zeros(E + 1, dtype=torch.int32)),
         ValueError, r"^ep_recv_count: must be a contiguous \[G \* R\] = \[4\]"),
        ("out shape", dict(out=torch.zeros(T + 1, H, dtype=torch.bfloat16)), ValueError,
         r"^out: shape must be"),
        ("out dtype", dict(out=torch.zeros(T, H)), TypeError, r"^out: dtype must be"),
    ]


def _fused_kwargs(prepared):
    x, idx, w = _inputs()
    w1, s1, w2, s2 = prepared["fp8"]
    return dict(x=x, topk_idx=idx, topk_weights=w, gmm1_permuted_weight=w1,
                gmm1_permuted_weight_scale=s1, gmm2_weight=w2, gmm2_weight_scale=s2,
                num_max_dispatch_tokens_per_rank=M, num_experts=E)


def test_bad_fused_arguments(buf, weights):
    prepared = weights[2]
    counting = _CountingFn(buf._fused_fn)
    buf._fused_fn = counting
    try:
        for name, change, exc, pattern in _bad_cases(prepared):
            kw = _fused_kwargs(prepared)
            kw.update(change)
            out = kw.get("out")
            if out is not None:
                out.fill_(7.0)
            with pytest.raises(exc, match=pattern):
                buf.fused_deep_moe(**kw)
            assert counting.calls == 0, "%s: the library was called" % name
            if out is not None:
                assert (out == 7.0).all(), "%s: out was written" % name
        # and the buffer still works
        kw = _fused_kwargs(prepared)
        buf.fused_deep_moe(**kw)
        assert counting.calls == 1
    finally:
        buf._fused_fn = counting.fn


def test_bf16_scales_may_be_none(buf, weights):
    w13, w2, prepared = weights
    x, idx, w = _inputs()
    w1, _, w2c, _ = prepared["bf16"]
    out, _, _ = buf.fused_deep_moe(x, idx, w, w1, None, w2c, None, M, E, use_fp8=False)
    flips = []
    ref = oracle.combine(oracle.expert_outputs(x, w13, w2, "bf16", flips), idx, w, E)
    err, allowed = oracle.check(out, ref, oracle.combine_flips(flips, idx, w, E), 5e-3)
    assert err <= allowed


def test_rare_valid_forms(buf, weights):
    """Valid arguments that the quick all-at-once test of a call leaves to the
    one-by-one checks (it is stricter) pass them, and the call gives the same result."""
    _, _, prepared = weights
    x, idx, w = _inputs()
    w1, s1, w2, s2 = prepared["fp8"]
    ep = torch.zeros(E, dtype=torch.int32)
    want, _, _ = buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E, ep_recv_count=ep)
    want_ep = ep.clone()
    for kw in (dict(quant="FP8"), dict(use_fp8=True, quant="fp8"),
               dict(ep_recv_count=ep.view(E, 1))):  # [G, R] with R = 1
        ep.zero_()
        got, _, _ = buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E, **kw)
        assert torch.equal(got, want), kw
        if "ep_recv_count" in kw:
            assert torch.equal(ep, want_ep), kw
    # T = 0 with K = 0: no token, so no slot either
    out, _, _ = buf.fused_deep_moe(x[:0], torch.empty(0, 0, dtype=torch.int64),
                                   torch.empty(0, 0), w1, s1, w2, s2, M, E)
    assert out.shape == (0, H)


def test_tensors_changed_after_an_accepted_call(buf, weights):
    """Every call checks its tensors as they are now, also the very objects that an
    earlier call with the same (T, K) accepted (fused_deep_moe's guards compare the
    metadata each call): a tensor changed in place (set_, resize_, as_strided_,
    .data), or None where a tensor was or the reverse, is refused as ever."""
    _, _, prepared = weights
    counting = _CountingFn(buf._fused_fn)
    buf._fused_fn = counting
    try:
        def call(**change):
            kw = _fused_kwargs(prepared)
            kw.update(change)
            buf.fused_deep_moe(**kw)

        w1, s1, w2, s2 = prepared["fp8"]
        b1, b2 = prepared["bf16"][0], prepared["bf16"][2]
        cases = [
            ("gmm2_weight", lambda t: t.set_(torch.empty(E, H, I // 2, dtype=t.dtype)),
             ValueError, r"^gmm2_weight: shape must be"),
            ("gmm2_weight_scale", lambda t: t.resize_(E, H + 1), ValueError,
             r"^gmm2_weight_scale: shape must be"),
            ("gmm1_permuted_weight", lambda t: t.as_strided_(t.shape, (2 * I * H, 2 * I, 1)),
             ValueError, r"^gmm1_permuted_weight: strides must be"),
            ("x", lambda t: setattr(t, "data", t.data.float()), TypeError,
             r"^x: dtype must be torch.bfloat16"),
            ("out", lambda t: t.resize_(6, H), ValueError, r"^out: shape must be"),
        ]
        for name, change, exc, pattern in cases:
            kw = _fused_kwargs(prepared)
            kw["gmm1_permuted_weight"] = w1.transpose(1, 2).clone().transpose(1, 2)
            kw["gmm2_weight"], kw["gmm2_weight_scale"] = w2.clone(), s2.clone()
            kw["out"] = torch.empty(5, H, dtype=torch.bfloat16)
            for _ in range(2):  # the second call meets the guard the first one made
                buf.fused_deep_moe(**kw)
            calls = counting.calls
            change(kw[name])
            with pytest.raises(exc, match=pattern):
                buf.fused_deep_moe(**kw)
            assert counting.calls == calls, name
        # None where an accepted call had a tensor, and the reverse (bf16: scales optional)
        for _ in range(2):
            call(gmm1_permuted_weight=b1, gmm2_weight=b2, quant="bf16",
                 gmm1_permuted_weight_scale=None, gmm2_weight_scale=None)
        calls = counting.calls
        with pytest.raises(ValueError, match=r"^gmm1_permuted_weight_scale: shape must be"):
            call(gmm1_permuted_weight=b1, gmm2_weight=b2, quant="bf16",
                 gmm1_permuted_weight_scale=s1[:, :8], gmm2_weight_scale=None)
        with pytest.raises(ValueError, match=r"^gmm2_weight_scale: required in fp8 mode"):
            call(gmm2_weight_scale=None)
        assert counting.calls == calls
        # one tensor passed twice (both scales, [G, 2I] = [G, H] here): a guard never
        # matches it (its tensors must be distinct), the checks pass it
        kw = _fused_kwargs(prepared)
        kw["gmm2_weight_scale"] = kw["gmm1_permuted_weight_scale"]
        for _ in range(2):
            buf.fused_deep_moe(**kw)
        assert counting.calls == calls + 2
    finally:
        buf._fused_fn = counting.fn
    # combine keeps a guard per dispatch (T, K) likewise
    x, idx, w = _inputs()
    for i in range(3):  # two dispatch/combine pairs, then a dispatch
        recv, _, handle, _, _ = buf.low_latency_dispatch(x, idx, M, E, use_fp8=False)
        y = recv.clone()
        if i < 2:
            buf.low_latency_combine(y, idx, w, handle)
    w64 = w.clone()
    w64.data = w64.data.double()
    with pytest.raises(TypeError, match=r"^topk_weights: dtype must be torch.float32"):
        buf.low_latency_combine(y, idx, w64, handle)
    y.resize_(E, 4, H)
    with pytest.raises(ValueError, match=r"^x: shape must be \[G, R \* num_max"):
        buf.low_latency_combine(y, idx, w, handle)
    buf.low_latency_combine(recv.clone(), idx, w, handle)  # the pending dispatch completes


def test_bad_dispatch_combine_arguments(buf, weights):
    x, idx, w = _inputs()
    with pytest.raises(TypeError, match=r"^x: dtype"):
        buf.low_latency_dispatch(x.float(), idx, M, E)
    with pytest.raises(ValueError, match=r"^x: T = 9 tokens exceeds"):
        buf.low_latency_dispatch(torch.zeros(M + 1, H, dtype=torch.bfloat16),
                                 torch.zeros(M + 1, K, dtype=torch.int64), M, E)
    with pytest.raises(NotImplementedError, match="return_recv_hook"):
        buf.low_latency_dispatch(x, idx, M, E, return_recv_hook=True)
    with pytest.raises(NotImplementedError, match="round_scale"):
        buf.low_latency_dispatch(x, idx, M, E, round_scale=True)
    with pytest.raises(ValueError, match=r"^cumulative_local_expert_recv_stats: shape"):
        buf.low_latency_dispatch(x, idx, M, E, torch.zeros(E + 1, dtype=torch.int32))
    recv, count, handle, event, hook = buf.low_latency_dispatch(x, idx, M, E, use_fp8=False)
    y = recv.clone()
    with pytest.raises(ValueError, match=r"^handle: must be the handle"):
        buf.low_latency_combine(y, idx, w, tuple(handle))
    with pytest.raises(ValueError, match=r"^x: shape must be \[G, R \* num_max"):
        buf.low_latency_combine(y[:, :4], idx, w, handle)
    with pytest.raises(TypeError, match=r"^x: dtype"):
        buf.low_latency_combine(y.float(), idx, w, handle)
    with pytest.raises(ValueError, match=r"^topk_idx: shape must be"):
        buf.low_latency_combine(y, idx[:2], w, handle)
    with pytest.raises(ValueError, match=r"^topk_weights: shape must be"):
        buf.low_latency_combine(y, idx, w[:, :1], handle)
    with pytest.raises(NotImplementedError, match="zero_copy"):
        buf.low_latency_combine(y, idx, w, handle, zero_copy=True)
    out, _, _ = buf.low_latency_combine(y, idx, w, handle)  # the pending dispatch completes
    # bf16 payload = x: the combine of y = recv_x is sum_k w * x
    ref = (w.sum(dim=1, keepdim=True).double() * x.double())
    assert oracle.rel_l2(out, ref) <= 5e-3
    with pytest.raises(dfm.DFMError, match="no dispatch is waiting"):
        buf.low_latency_combine(y, idx, w, handle)


# ---- weight helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["fp8", "int8", "bf16"])
def test_weight_helpers_match_oracle(weights, mode):
    w13, w2, prepared = weights
    w1, s1, w2c, s2 = prepared[mode]
    G, N = E, 2 * I
    assert tuple(w1.shape) == (G, H, N) and w1.stride() == (N * H, 1, H)
    assert tuple(s1.shape) == (G, N) and s1.dtype == torch.float32
    assert tuple(w2c.shape) == (G, H, I) and w2c.is_contiguous()
    assert tuple(s2.shape) == (G, H) and s2.dtype == torch.float32
    assert w1.dtype == dfm.code_dtype(mode) and w2c.dtype == dfm.code_dtype(mode)
    codes1, scales1 = oracle.quantize_weights(w13, mode)
    perm = oracle.permutation(I)
    assert all(dfm.permuted_channel_source(p, I) == int(perm[p]) for p in range(N))
    mem1 = w1.transpose(1, 2)  # [G][2I][H] memory, permuted channels
    bits = {"fp8": torch.uint8, "int8": torch.int8, "bf16": torch.int16}[mode]
    assert torch.equal(mem1.contiguous().view(bits), codes1[:, perm].contiguous().view(bits))
    assert torch.equal(s1, scales1[:, perm])
    codes2, scales2 = oracle.quantize_weights(w2, mode)
    assert torch.equal(w2c.view(bits), codes2.view(bits))
    assert torch.equal(s2, scales2)
    if mode == "bf16":
        assert (s1 == 1).all() and (s2 == 1).all()


def test_weight_helpers_edge_values():
    # zero channels (s = 0, codes 0), saturation, ties, subnormal fp8 codes
    w13 = torch.zeros(1, 128, 128, dtype=torch.bfloat16)
    w13[0, 1] = torch.linspace(-3, 3, 128).to(torch.bfloat16)
    w13[0, 2, :64] = 1e-30
    w13[0, 2, 64:] = torch.logspace(-8, 2, 64).to(torch.bfloat16)
    w13[0, 3] = (torch.arange(128) % 7 - 3).to(torch.bfloat16) * 0.5
    for mode in ("fp8", "int8", "bf16"):
        w1, s1 = dfm.prepare_gmm1_weight(w13, mode)
        codes, scales = oracle.quantize_weights(w13, mode)
        perm = oracle.permutation(64)
        bits = {"fp8": torch.uint8, "int8": torch.int8, "bf16": torch.int16}[mode]
        assert torch.equal(w1.transpose(1, 2).contiguous().view(bits),
                           codes[:, perm].contiguous().view(bits)), mode
        assert torch.equal(s1, scales[:, perm]), mode
    assert float(s1[0, 0]) == 1.0


def test_fp8_encoder_exhaustive_against_oracle():
    """Every finite bf16 value with |v| <= 448 through the library's FP8 quantization
    (the w2 helper; each channel holds 448 so its scale is exactly 1 and the code
    is e4m3_rne_satfinite(v)) against the oracle's table-based encoder."""
    bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16)
    vals = bits.view(torch.bfloat16)
    vals = vals[torch.isfinite(vals.float()) & (vals.float().abs() <= 448)]
    per_row = 63
    nrows = -(-vals.numel() // per_row)
    padded = torch.zeros(nrows * per_row, dtype=torch.bfloat16)
    padded[: vals.numel()] = vals
    rows = torch.cat([torch.full((nrows, 1), 448.0, dtype=torch.bfloat16),
                      padded.reshape(nrows, per_row)], dim=1)  # [nrows, 64]
    G = -(-nrows // 128)
    w2 = torch.zeros(G * 128, 64, dtype=torch.bfloat16)
    w2[:, 0] = 448.0
    w2[:nrows] = rows
    w2 = w2.reshape(G, 128, 64)
    codes, scales = dfm.prepare_gmm2_weight(w2, "fp8")
    want, wscales = oracle.quantize_weights(w2, "fp8")
    assert (wscales == 1).all() and torch.equal(scales, wscales)
    got = codes.view(torch.uint8) if codes.dtype != torch.uint8 else codes
    assert torch.equal(got, want)


def test_weight_helper_errors():
    with pytest.raises(TypeError, match=r"^w13: dtype must be torch.bfloat16"):
        dfm.prepare_gmm1_weight(torch.zeros(1, 128, 256), "fp8")
    with pytest.raises(ValueError, match=r"^w13: must be 3-D"):
        dfm.prepare_gmm1_weight(torch.zeros(128, 256, dtype=torch.bfloat16), "fp8")
    with pytest.raises(ValueError, match=r"^w13: hidden H = 200"):
        dfm.prepare_gmm1_weight(torch.zeros(1, 128, 200, dtype=torch.bfloat16), "fp8")
    with pytest.raises(ValueError, match=r"^w2: inter I = 100"):
        dfm.prepare_gmm2_weight(torch.zeros(1, 256, 100, dtype=torch.bfloat16), "fp8")
    with pytest.raises(ValueError, match=r"quant: 'fp16'"):
        dfm.prepare_gmm2_weight(torch.zeros(1, 256, 128, dtype=torch.bfloat16), "fp16")
    with pytest.raises(ValueError, match=r"^w2: shape"):
        dfm.prepare_weights(torch.zeros(1, 256, 256, dtype=torch.bfloat16),
                            torch.zeros(1, 256, 64, dtype=torch.bfloat16))


# ---- sizes -------------------------------------------------------------------------------------

def test_buffer_size_hint():
    a = dfm.get_buffer_size_hint(128, 7168, 256, 8, inter=2048)
    b = dfm.get_buffer_size_hint(256, 7168, 256, 8, inter=2048)
    c = dfm.Buffer.get_buffer_size_hint(128, 7168, 256, 8, inter=2048, quant_modes=("fp8",))
    assert 0 < a < b and 0 < c < a
    with pytest.raises(ValueError, match="num_experts: 255 is not a multiple"):
        dfm.get_buffer_size_hint(128, 7168, 255, 8, inter=2048)
    with pytest.raises(ValueError, match="hidden"):
        dfm.get_buffer_size_hint(128, 7000, 256, 8, inter=2048)


# ---- host overhead -----------------------------------------------------------------------------

def test_host_overhead(buf, weights, capsys):
    """Per-call host cost of the Python layer (reported, not asserted): each operator
    with the library's entry point swapped for a C function that returns at once
    (host_overhead.py, which also runs on its own)."""
    assert (host_overhead.H, host_overhead.I, host_overhead.E, host_overhead.M,
            host_overhead.K) == (H, I, E, M, K)
    res = host_overhead.measure(buf, weights[2]["fp8"], n=5000)
    assert buf._moe_args.num_tokens == 1  # the last call filled the struct
    with capsys.disabled():
        print("\n[host overhead] " + host_overhead.report(res))
