"""Per-rank test bodies, run by dfm_dist.run() on every rank of a world.

Every rank generates the whole problem (all ranks' tokens and routing, all
experts' checkpoint weights) from the same seed, so it can compute the oracle
for its own tokens and the exact routing it must receive. Failures name the
seed, the rank, the mode and the case.
"""
import math
import os
import time

import torch
import torch.distributed as dist

import deepfusedmoe as dfm
import dfm_oracle as oracle

CASES = ("normal", "outliers", "skewed", "minus1", "duplicates", "empty_rank")


class Problem:
    """One configuration and the data of every rank for one call."""

    def __init__(self, seed, R, E, H, I, M, K, case):
        self.R, self.E, self.H, self.I, self.M, self.K, self.case = R, E, H, I, M, K, case
        g = torch.Generator().manual_seed(seed)
        self.w13 = (torch.randn(E, 2 * I, H, generator=g) / math.sqrt(H)).to(torch.bfloat16)
        self.w2 = (torch.randn(E, H, I, generator=g) / math.sqrt(I)).to(torch.bfloat16)
        self.x, self.idx, self.w = [], [], []
        for r in range(R):
            T = M - (r * 3) % (M + 1) if case != "empty_rank" or r != R - 1 else 0
            if case == "normal" and r == 0:
                T = M
            x = torch.randn(T, H, generator=g)
            if case == "outliers" and T > 0:
                for _ in range(4):
                    t = int(torch.randint(0, T, (1,), generator=g))
                    j = int(torch.randint(0, H, (1,), generator=g))
                    x[t, j] = 50.0 * (1 if j % 2 else -1)
            scores = torch.rand(T, E, generator=g)
            if case == "skewed":
                scores[:, : max(1, E // 4)] += 10.0
            idx = scores.topk(K, dim=1).indices.to(torch.int64)
            if case == "minus1" and T > 0:
                drop = torch.rand(T, K, generator=g) < 0.3
                idx[drop] = -1
                idx[0] = -1  # a token with no expert at all: exact zeros
                if T > 2:
                    idx[T // 2, :] = -1
            if case == "duplicates" and T > 0 and K > 1:
                idx[:, 1] = idx[:, 0]  # the same expert twice: sent once, both weights apply
                if T > 1:
                    idx[1, :] = idx[1, 0]
            self.x.append(x.to(torch.bfloat16))
            self.idx.append(idx)
            self.w.append(torch.rand(T, K, generator=g, dtype=torch.float32))

    def local_weights(self, rank):
        G = self.E // self.R
        return self.w13[rank * G:(rank + 1) * G], self.w2[rank * G:(rank + 1) * G]

    def routed(self, rank, g):
        """[(src, token)] that local expert g of `rank` receives, in the packed order."""
        e = rank * (self.E // self.R) + g
        rows = []
        for src in range(self.R):
            for t in range(self.idx[src].shape[0]):
                if any(int(v) == e for v in self.idx[src][t]):
                    rows.append((src, t))
        return rows

    def ep_recv_count(self, rank):
        G = self.E // self.R
        out = torch.zeros(G * self.R, dtype=torch.int32)
        for g in range(G):
            for src, _ in self.routed(rank, g):
                out[g * self.R + src] += 1
        return out


def _make_buffer(R, M, H, E, I, K, device, **kw):
    return dfm.Buffer(None, M, H, E, inter=I, max_topk=K, **kw)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _nan_bf16(shape, device):
    return torch.full(shape, float("nan"), dtype=torch.bfloat16, device=device)


def fused_references(prob, rank, mode):
    """The float64 references of rank's fused output: (oracle, unquantized math,
    the oracle's allowance for act code flips)."""
    x, idx, w = prob.x[rank], prob.idx[rank], prob.w[rank]
    flips = []
    y = oracle.expert_outputs(x, prob.w13, prob.w2, mode, flips)
    ref = oracle.combine(y, idx, w, prob.E)
    amb = oracle.combine_flips(flips, idx, w, prob.E)
    unq = oracle.combine(oracle.expert_outputs_unquantized(x, prob.w13, prob.w2), idx, w, prob.E)
    return ref, unq, amb


def check_fused_output(out, prob, rank, mode, tag, refs=None):
    """out against SPEC 3.3's tolerances; refs: fused_references(prob, rank, mode)
    when the caller has them already."""
    x, idx = prob.x[rank], prob.idx[rank]
    out = out.cpu()
    assert not torch.isnan(out.float()).any(), "%s: NaN in output (unwritten rows?)" % tag
    ref, unq, amb = refs if refs is not None else fused_references(prob, rank, mode)
    tol, sanity = oracle.TOLERANCE[mode]
    if x.shape[0] == 0:
        return
    zero_rows = ((idx < 0) | (idx >= prob.E)).all(dim=1)
    if zero_rows.any():
        assert (out[zero_rows] == 0).all(), "%s: tokens without experts must be exact zeros" % tag
    err, allowed = oracle.check(out, ref, amb, tol)
    assert err <= allowed, "%s: rel L2 error vs oracle %.3g > %.3g (%.3g + act values at a rounding boundary)" % (
        tag, err, allowed, tol)
    err2 = oracle.rel_l2(out, unq)
    assert err2 <= sanity, "%s: rel L2 error vs unquantized math %.3g > %.3g" % (tag, err2, sanity)


def _prepared(prob, rank, mode, device):
    w13, w2 = prob.local_weights(rank)
    return [t.to(device) if t is not None else None
            for t in dfm.prepare_weights(w13, w2, mode)]


def fused_numerics(rank, R, seed, mode, device_type, cases=CASES, H=256, I=128, G=2, M=12, K=3,
                   path="default", want_path=None):
    """The fused operator against the oracle, every case, back to back (no barriers).
    path: the Buffer's; want_path: the way it must then run ('kernel' or 'pipeline')."""
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    E = G * R
    K = min(K, E)
    buf = _make_buffer(R, M, H, E, I, K, device, path=path)
    if want_path is not None:
        assert buf.path_taken == want_path, "path=%r ran as %r" % (path, buf.path_taken)
    first = Problem(seed, R, E, H, I, M, K, "normal")
    w1, s1, w2, s2 = _prepared(first, rank, mode, device)
    for n, case in enumerate(cases):
        prob = Problem(seed, R, E, H, I, M, K, case)  # same seed: same weights
        tag = "seed=%d rank=%d/%d mode=%s case=%s" % (seed, rank, R, mode, case)
        x, idx, w = (t.to(device) for t in (prob.x[rank], prob.idx[rank], prob.w[rank]))
        ep = torch.full((G * R,), -7, dtype=torch.int32, device=device)
        out = _nan_bf16((x.shape[0], H), device)
        kw = {"quant": mode} if n % 2 == 0 else {"use_fp8": mode == "fp8"}
        if mode == "int8":
            kw = {"quant": "int8"}
        if mode == "bf16" and n % 3 == 1:
            w1_, s1_, s2_ = w1, None, None  # scales may be None in bf16 mode
        else:
            w1_, s1_, s2_ = w1, s1, s2
        res, event, hook = buf.fused_deep_moe(x, idx, w, w1_, s1_, w2, s2_, M, E,
                                              ep_recv_count=ep, out=out, **kw)
        assert res is out
        event.current_stream_wait()
        assert hook() is None
        _sync(device)
        assert torch.equal(ep.cpu(), prob.ep_recv_count(rank)), \
            "%s: ep_recv_count %s != %s" % (tag, ep.cpu().tolist(), prob.ep_recv_count(rank).tolist())
        check_fused_output(out, prob, rank, mode, tag)
    # the seed's defaults: use_fp8=True is FP8, the returned output is fresh
    if mode == "fp8":
        prob = first
        x, idx, w = (t.to(device) for t in (prob.x[rank], prob.idx[rank], prob.w[rank]))
        out, event, hook = buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E)
        _sync(device)
        check_fused_output(out, prob, rank, "fp8", "defaults seed=%d rank=%d" % (seed, rank))
        out, event, hook = buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E,
                                              async_finish=True)
        event.current_stream_wait()
        _sync(device)
        check_fused_output(out, prob, rank, "fp8", "async seed=%d rank=%d" % (seed, rank))
    assert buf.check_async_error() is None
    buf.destroy()


def fused_numerics_on_path(rank, R, seed, mode, path):
    """fused_numerics on CUDA with the Buffer's path, which the context must take."""
    fused_numerics(rank, R, seed, mode, "cuda", path=path, want_path=path)


def _expect_dispatch(buf_out, prob, rank, mode, tag):
    recv, recv_count, handle, event, hook = buf_out
    event.current_stream_wait()
    if mode == "bf16":
        assert isinstance(recv, torch.Tensor), "%s: bf16 dispatch returns one tensor" % tag
        codes, scales = recv, None
    else:
        codes, scales = recv
    src_info, layout_range = handle[0], handle[1]
    G, R, M, H = prob.E // prob.R, prob.R, prob.M, prob.H
    assert tuple(codes.shape) == (G, R * M, H), tag
    assert codes.dtype == dfm.code_dtype(mode), "%s: recv_x dtype %s" % (tag, codes.dtype)
    assert recv_count.dtype == torch.int32 and tuple(recv_count.shape) == (G,), tag
    assert layout_range.dtype == torch.int64 and tuple(layout_range.shape) == (G, R), tag
    assert handle[2] == M and handle[3] == H and handle[4] == prob.E, tag
    codes, recv_count, layout_range, src_info = (t.cpu() for t in
                                                 (codes, recv_count, layout_range, src_info))
    if scales is not None:
        assert scales.dtype == torch.float32 and tuple(scales.shape) == (G, R * M), tag
        scales = scales.cpu()
    for g in range(G):
        rows = prob.routed(rank, g)
        n = len(rows)
        assert int(recv_count[g]) == n, "%s: recv_count[%d] = %d != %d" % (tag, g, int(recv_count[g]), n)
        begin = 0
        for src in range(R):
            cnt = sum(1 for s, _ in rows if s == src)
            want = (begin << 32) | cnt
            assert int(layout_range[g, src]) == want, \
                "%s: layout_range[%d,%d] = %#x != %#x" % (tag, g, src, int(layout_range[g, src]), want)
            begin += cnt
        if n == 0:
            continue
        want_info = torch.tensor([s * M + t for s, t in rows], dtype=torch.int32)
        assert torch.equal(src_info[g, :n], want_info), "%s: src_info of expert %d" % (tag, g)
        xs = torch.stack([prob.x[s][t] for s, t in rows])
        want_codes, want_scales = oracle.quantize_rows(xs.float(), mode)
        got = codes[g, :n]
        if mode == "fp8":
            got = got.view(torch.uint8) if got.dtype != torch.uint8 else got
            same = torch.equal(got, want_codes)
        elif mode == "int8":
            same = torch.equal(got, want_codes)
        else:
            same = torch.equal(got.view(torch.int16), want_codes.view(torch.int16))
        if not same:
            bad = (got.to(torch.int32) != want_codes.to(torch.int32)) if mode != "bf16" else \
                (got.view(torch.int16) != want_codes.view(torch.int16))
            j = bad.nonzero()[0].tolist()
            raise AssertionError("%s: dispatched codes of expert %d differ from the oracle "
                                 "first at row %d col %d" % (tag, g, j[0], j[1]))
        if scales is not None:
            assert torch.equal(scales[g, :n], want_scales), \
                "%s: dispatched scales of expert %d differ from the oracle" % (tag, g)


def _combine_input(prob, rank, device):
    """y [G, R*M, H]: row of (src, t) for local expert e holds bf16(x_src[t] * c_e);
    rows past recv_count are NaN (a combine that reads them fails)."""
    G, R, M, H = prob.E // prob.R, prob.R, prob.M, prob.H
    y = torch.full((G, R * M, H), float("nan"), dtype=torch.bfloat16)
    for g in range(G):
        e = rank * G + g
        for j, (s, t) in enumerate(prob.routed(rank, g)):
            y[g, j] = (prob.x[s][t].float() * _coef(e)).to(torch.bfloat16)
    return y.to(device)


def _coef(e):
    return 1.0 + (e % 4) * 0.25


def _check_combined(out, prob, rank, tag):
    x, idx, w = prob.x[rank], prob.idx[rank], prob.w[rank]
    out = out.cpu()
    T = x.shape[0]
    ref = torch.zeros(T, prob.H, dtype=torch.float64)
    for t in range(T):
        for k in range(idx.shape[1]):
            e = int(idx[t, k])
            if 0 <= e < prob.E:
                ref[t] += float(w[t, k]) * (x[t].float() * _coef(e)).to(torch.bfloat16).double()
    assert not torch.isnan(out.float()).any(), "%s: NaN in combined output" % tag
    err = oracle.rel_l2(out, ref)
    assert err <= 5e-3, "%s: combine rel L2 %.3g" % (tag, err)
    if T:
        zero_rows = (idx < 0).all(dim=1)
        assert (out[zero_rows] == 0).all(), "%s: tokens without experts must be zeros" % tag


def dispatch_combine(rank, R, seed, device_type, modes=("fp8", "int8", "bf16"), cases=CASES,
                     H=256, I=128, G=2, M=12, K=3):
    """low_latency_dispatch payload bit for bit, routing/counts exactly; combine; two in flight."""
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    E = G * R
    K = min(K, E)
    buf = _make_buffer(R, M, H, E, I, K, device)
    for mode in modes:
        for case in cases:
            prob = Problem(seed, R, E, H, I, M, K, case)
            tag = "seed=%d rank=%d/%d mode=%s case=%s" % (seed, rank, R, mode, case)
            x, idx, w = (t.to(device) for t in (prob.x[rank], prob.idx[rank], prob.w[rank]))
            ep = torch.full((G * R,), -7, dtype=torch.int32, device=device)
            stats = torch.zeros(G, dtype=torch.int32, device=device)
            res = buf.low_latency_dispatch(x, idx, M, E, stats, quant=mode, ep_recv_count=ep)
            _sync(device)
            _expect_dispatch(res, prob, rank, mode, tag)
            assert torch.equal(ep.cpu(), prob.ep_recv_count(rank)), "%s: ep_recv_count" % tag
            assert torch.equal(stats.cpu(), res[1].cpu()), "%s: cumulative stats" % tag
            y = _combine_input(prob, rank, device)
            out, event, hook = buf.low_latency_combine(y, idx, w, res[2])
            event.current_stream_wait()
            _sync(device)
            _check_combined(out, prob, rank, tag)
    # two dispatches in flight (DeepEP's two-batch overlap): A, B, combine A, combine B
    pa = Problem(seed, R, E, H, I, M, K, "normal")
    pb = Problem(seed + 1, R, E, H, I, M, K, "minus1")
    da = buf.low_latency_dispatch(*(t.to(device) for t in (pa.x[rank], pa.idx[rank])), M, E,
                                  use_fp8=False)
    db = buf.low_latency_dispatch(*(t.to(device) for t in (pb.x[rank], pb.idx[rank])), M, E,
                                  quant="int8")
    _sync(device)
    _expect_dispatch(da, pa, rank, "bf16", "in-flight A seed=%d rank=%d" % (seed, rank))
    _expect_dispatch(db, pb, rank, "int8", "in-flight B seed=%d rank=%d" % (seed, rank))
    oa, _, _ = buf.low_latency_combine(_combine_input(pa, rank, device), pa.idx[rank].to(device),
                                       pa.w[rank].to(device), da[2])
    ob, _, _ = buf.low_latency_combine(_combine_input(pb, rank, device), pb.idx[rank].to(device),
                                       pb.w[rank].to(device), db[2])
    _sync(device)
    _check_combined(oa, pa, rank, "in-flight A seed=%d rank=%d" % (seed, rank))
    _check_combined(ob, pb, rank, "in-flight B seed=%d rank=%d" % (seed, rank))
    # the fused operator still works after dispatch/combine
    w1, s1, w2, s2 = _prepared(pa, rank, "fp8", device)
    out, _, _ = buf.fused_deep_moe(pa.x[rank].to(device), pa.idx[rank].to(device),
                                   pa.w[rank].to(device), w1, s1, w2, s2, M, E)
    _sync(device)
    check_fused_output(out, pa, rank, "fp8", "fused after dispatch seed=%d rank=%d" % (seed, rank))
    buf.destroy()


def invalid_experts(rank, R, seed, device_type, H=256, I=128, G=2, M=8, K=3):
    """An expert id outside [-1, E) is dropped and becomes the asynchronous error of every
    rank: check_async_error() reports it, the next call raises it, and the call after works."""
    import pytest
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    E = G * R
    K = min(K, E)
    buf = _make_buffer(R, M, H, E, I, K, device)
    prob = Problem(seed, R, E, H, I, M, K, "normal")
    w1, s1, w2, s2 = _prepared(prob, rank, "bf16", device)
    if rank == 0:
        prob.idx[0][0, 0] = E          # out of range: dropped
        prob.idx[0][1, 1] = -5         # below -1: dropped
    args = lambda p: [t.to(device) for t in (p.x[rank], p.idx[rank], p.w[rank])]  # noqa: E731

    out, _, _ = buf.fused_deep_moe(*args(prob), w1, s1, w2, s2, M, E, quant="bf16")
    _sync(device)
    check_fused_output(out, prob, rank, "bf16", "dropped slots seed=%d rank=%d" % (seed, rank))
    err = buf.check_async_error(raise_error=False)
    assert isinstance(err, dfm.DFMAsyncError), "rank %d: no asynchronous error reported" % rank
    assert err.status_name == "DFM_ERROR_INVALID_EXPERT", err
    assert buf.check_async_error() is None  # cleared once reported
    dist.barrier()

    # the next call raises it, before launching anything; the one after works
    out, _, _ = buf.fused_deep_moe(*args(prob), w1, s1, w2, s2, M, E, quant="bf16")
    _sync(device)
    dist.barrier()
    with pytest.raises(dfm.DFMAsyncError, match="INVALID_EXPERT"):
        buf.fused_deep_moe(*args(prob), w1, s1, w2, s2, M, E, quant="bf16")
    good = Problem(seed, R, E, H, I, M, K, "normal")
    out, _, _ = buf.fused_deep_moe(*args(good), w1, s1, w2, s2, M, E, quant="bf16")
    _sync(device)
    check_fused_output(out, good, rank, "bf16", "after async error seed=%d rank=%d" % (seed, rank))
    buf.destroy()


def peer_timeout(rank, R, seed, device_type, H=256, I=128, G=1, M=4, K=1):
    """A rank that never arrives: the others time out after timeout_s, the Buffer fails fast."""
    import pytest
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    E = G * R
    buf = _make_buffer(R, M, H, E, I, K, device, timeout_s=1.5)
    prob = Problem(seed, R, E, H, I, M, K, "normal")
    w1, s1, w2, s2 = _prepared(prob, rank, "bf16", device)
    if rank == 0:
        t0 = time.monotonic()
        with pytest.raises(dfm.DFMError) as info:
            buf.fused_deep_moe(*(t.to(device) for t in (prob.x[0], prob.idx[0], prob.w[0])),
                               w1, s1, w2, s2, M, E, quant="bf16")
            _sync(device)
            buf.check_async_error()
        waited = time.monotonic() - t0
        assert "TIMEOUT" in str(info.value) or "timeout" in str(info.value).lower(), info.value
        assert waited < 30, "timed out only after %.1f s" % waited
        t0 = time.monotonic()
        with pytest.raises(dfm.DFMError):
            buf.fused_deep_moe(*(t.to(device) for t in (prob.x[0], prob.idx[0], prob.w[0])),
                               w1, s1, w2, s2, M, E, quant="bf16")
        assert time.monotonic() - t0 < 1.0, "a failed Buffer must fail fast"
    dist.barrier()
    buf.destroy()


def config_mismatch(rank, R, seed, device_type):
    """Ranks that disagree on the configuration are all refused, with the difference named."""
    import pytest
    hidden = 256 if rank == 0 else 512
    with pytest.raises(dfm.DFMError, match="hidden"):
        dfm.Buffer(None, 8, hidden, 2 * R, inter=128)
    # and the world is still usable for a correct Buffer
    buf = dfm.Buffer(None, 8, 256, 2 * R, inter=128)
    buf.destroy()


def graph_replay(rank, R, seed, replays=4, fused_kernel=False, distinct=None, H=256, I=128, G=2, M=8,
                 K=3):
    """fused_deep_moe captured in a CUDA graph, replayed with fresh inputs each time
    (distinct: cycle through that many input sets, each checked every time it is
    replayed; fused_kernel: the one-kernel operator, DFM_CUDA_FUSED=1)."""
    device = torch.device("cuda", rank)
    E = G * R
    K = min(K, E)
    if fused_kernel:
        os.environ["DFM_CUDA_FUSED"] = "1"  # this worker process only, read at creation
    buf = _make_buffer(R, M, H, E, I, K, device)
    prob = Problem(seed, R, E, H, I, M, K, "normal")
    w1, s1, w2, s2 = _prepared(prob, rank, "fp8", device)
    T = prob.x[rank].shape[0]
    x = prob.x[rank].to(device)
    idx = prob.idx[rank].to(device)
    w = prob.w[rank].to(device)
    out = _nan_bf16((T, H), device)
    ep = torch.zeros(G * R, dtype=torch.int32, device=device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up outside the graph
        buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E, out=out, ep_recv_count=ep)
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E, out=out, ep_recv_count=ep)
    sets = {}
    for n in range(replays):
        key = n % distinct if distinct else n
        if key not in sets:
            if not distinct:
                sets.clear()  # a fresh set every replay: keep only the current one
            p = Problem(seed + 100 + key, R, E, H, I, M, K, ("normal", "minus1", "duplicates")[key % 3])
            # same weights and T, fresh tokens and routing
            p.w13, p.w2 = prob.w13, prob.w2
            p.x = [t[:prob.x[r].shape[0]] for r, t in enumerate(p.x)]
            p.idx = [t[:prob.x[r].shape[0]] for r, t in enumerate(p.idx)]
            p.w = [t[:prob.x[r].shape[0]] for r, t in enumerate(p.w)]
            sets[key] = (p, fused_references(p, rank, "fp8"), p.ep_recv_count(rank))
        p, refs, ep_ref = sets[key]
        x.copy_(p.x[rank])
        idx.copy_(p.idx[rank])
        w.copy_(p.w[rank])
        out.fill_(float("nan"))
        ep.fill_(-7)
        graph.replay()
        torch.cuda.synchronize(device)
        tag = "graph replay %d seed=%d rank=%d%s" % (n, seed, rank, " (fused kernel)" if fused_kernel else "")
        check_fused_output(out, p, rank, "fp8", tag, refs)
        assert torch.equal(ep.cpu(), ep_ref), tag + ": ep_recv_count"
    assert buf.check_async_error() is None
    buf.destroy()


def _thread_cpu_ticks():
    """{thread id: (name, user + system clock ticks)} of this process's threads."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/stat" % tid) as f:
                stat = f.read()
            with open("/proc/self/task/%s/comm" % tid) as f:
                name = f.read().strip()
        except OSError:  # the thread ended
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
        ticks[tid] = (name, int(fields[11]) + int(fields[12]))  # utime, stime (14, 15)
    return ticks


def _busy_threads(before, after, seconds, top=4):
    """The threads that used the most CPU between two _thread_cpu_ticks(), as
    'name (tid) share' with share = CPU time / wall time (1.0 = a whole core)."""
    hz = os.sysconf("SC_CLK_TCK")
    use = sorted(((after[t][1] - before.get(t, (None, 0))[1]) / hz / max(seconds, 1e-9),
                  after[t][0], t) for t in after)
    return ", ".join("%s (%s) %.2f" % (name, tid, share) for share, name, tid in use[::-1][:top])


def _interleaved_us(fns, device, rounds=15, per_burst=20):
    """For each (fn, before, after) of fns, the median wall-clock and CPU (this
    thread) time per call of fn over `rounds` bursts of per_burst calls, the bursts
    of the fns taken in turn within each round (so drift of the machine affects all
    alike), each started on an idle GPU (the launch queue never fills); before() and
    after() run around each burst, untimed. Returns [(wall_us, cpu_us)] in order."""
    import statistics
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(rounds):
        for i, (fn, before, after) in enumerate(fns):
            torch.cuda.synchronize(device)
            before()
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(per_burst):
                fn()
            wall[i].append((time.perf_counter() - t0) / per_burst * 1e6)
            cpu[i].append((time.thread_time() - c0) / per_burst * 1e6)
            after()
    torch.cuda.synchronize(device)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu)]


def cuda_host_overhead(rank, R, seed, result_path, H=7168, I=2048, G=2, M=32, K=8, T=32):
    """Host time per fused_deep_moe call on CUDA without graphs: the whole call (out=
    given, and output allocated), the bare ctypes dfm_fused_moe call and the Python
    layer alone (library call stubbed), their bursts interleaved, in wall-clock and in
    this thread's CPU time; and the GPU time per call back to back. Rank 0 writes them
    to result_path."""
    import host_overhead
    from deepfusedmoe import _lib
    device = torch.device("cuda", rank)
    E = G * R
    K = min(K, E)
    buf = _make_buffer(R, M, H, E, I, K, device)
    g = torch.Generator().manual_seed(seed)
    w13 = (torch.randn(G, 2 * I, H, generator=g) / math.sqrt(H)).to(torch.bfloat16)
    w2 = (torch.randn(G, H, I, generator=g) / math.sqrt(I)).to(torch.bfloat16)
    w1, s1, w2c, s2 = (t.to(device) for t in dfm.prepare_weights(w13, w2, "fp8"))
    x = torch.randn(T, H, generator=g).to(torch.bfloat16).to(device)
    idx = torch.rand(T, E, generator=g).topk(K, dim=1).indices.to(device)
    w = torch.rand(T, K, generator=g).to(device)
    out = torch.empty(T, H, dtype=torch.bfloat16, device=device)
    ep = torch.zeros(G * R, dtype=torch.int32, device=device)
    call = lambda: buf.fused_deep_moe(x, idx, w, w1, s1, w2c, s2, M, E, out=out,  # noqa: E731
                                      ep_recv_count=ep)
    alloc = lambda: buf.fused_deep_moe(x, idx, w, w1, s1, w2c, s2, M, E)  # noqa: E731
    for _ in range(20):
        call()
    torch.cuda.synchronize(device)
    dist.barrier()
    real = buf._fused_fn
    args = buf._moe_args_ref  # holds the tensors of the last call(): live
    stub = host_overhead.stub_for(real, _lib.lib())  # returns 0 at once, ignores the args

    def use(fn):
        def f():
            buf._fused_fn = fn
        return f

    keep = use(real)
    fns = [(call, keep, keep), (alloc, keep, keep), (lambda: real(buf._ctx, args), keep, keep)]
    if rank == 0:  # the Python layer alone: rank 0's calls go to the stub (no collective)
        fns.append((call, use(stub), keep))
    # every rank runs the same collective calls in the same order (the stub is no call)
    threads0 = _thread_cpu_ticks()
    t0 = time.perf_counter()
    res = _interleaved_us(fns, device)
    busy = _busy_threads(threads0, _thread_cpu_ticks(), time.perf_counter() - t0)
    dist.barrier()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(100):
        call()
    stop.record()
    torch.cuda.synchronize(device)
    gpu_us = start.elapsed_time(stop) * 1e3 / 100
    if rank == 0:
        (fw, fc), (aw, ac), (bw, bc), (pw, pc) = res
        with open(result_path, "w") as f:
            f.write("torch %s, CUDA, %d rank(s), T=%d H=%d I=%d E=%d K=%d fp8, no graph, us/call "
                    "wall (CPU): whole call %.1f (%.1f) with out= given, %.1f (%.1f) with the "
                    "output allocated; the bare ctypes dfm_fused_moe call %.1f (%.1f); the "
                    "Python layer alone %.1f (%.1f); GPU %.1f us/call back to back; rank 0 may "
                    "run on %d CPUs, its process has %d threads; busiest threads during "
                    "the timing (share of one core): %s\n"
                    % (torch.__version__, R, T, H, I, E, K, fw, fc, aw, ac, bw, bc, pw, pc,
                       gpu_us, len(os.sched_getaffinity(0)), len(os.listdir("/proc/self/task")),
                       busy))
    buf.destroy()
