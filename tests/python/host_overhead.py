"""Host time per call of the Python layer, with the library's entry points
stubbed: what is timed is the argument checks, the filling of the argument
struct, the asynchronous-error poll, the ctypes call itself and the return
values — everything of a call but the library's work.

Run on the CPU backend in a one-rank gloo world of its own (no GPU needed):

    DFM_LIBRARY=build-werror/libdfm.so PYTHONPATH=python /usr/bin/python3 \\
        tests/python/host_overhead.py [-n CALLS]

test_api.py::test_host_overhead prints the same figures under pytest; the
CUDA figures (whole call, Python layer alone, bare C call on a GPU) come from
dfm_workers.cuda_host_overhead.
"""
import argparse
import ctypes
import math
import os
import sys
import tempfile
import time

import torch

H, I, E, M, K = 256, 128, 4, 8, 3  # one rank: G = E local experts


def stub_for(real, lib):
    """A C function that returns 0 at once and ignores its arguments, callable
    as ``real`` is (dfm_ctx_rank: the rank of the context, 0 on rank 0)."""
    stub = type(real)(("dfm_ctx_rank", lib))
    stub.restype = ctypes.c_int
    stub.argtypes = [ctypes.c_void_p] * len(real.argtypes)
    return stub


def best_us(fn, n=5000, rounds=20):
    """Mean CPU time of this thread per call, over n / rounds calls in a row, in
    us: the best of ``rounds`` rounds (the least disturbed by other work on the
    machine; CPU time leaves out the time the thread waited for a core)."""
    for _ in range(min(n // 10, 200)):
        fn()
    per_round = max(n // rounds, 1)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(per_round):
            fn()
        best = min(best, (time.thread_time() - t0) / per_round)
    return best * 1e6


def inputs(T, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=g).to(torch.bfloat16)
    idx = torch.rand(T, E, generator=g).topk(K, dim=1).indices
    w = torch.rand(T, K, generator=g)
    return x, idx, w


def measure(buf, prepared, n=5000):
    """{name: us per call} of the Python layer with the library stubbed, plus the
    stub's own ctypes call (the floor any call pays) and, unstubbed, the whole
    fused call and the bare ctypes dfm_fused_moe call on this backend."""
    from deepfusedmoe import _lib
    lib = _lib.lib()
    x, idx, w = inputs(T=1)
    w1, s1, w2, s2 = prepared
    out = torch.empty(1, H, dtype=torch.bfloat16)
    ep = torch.zeros(E, dtype=torch.int32)
    res = {}
    real = {name: getattr(buf, name) for name in ("_fused_fn", "_dispatch_fn", "_combine_fn")}
    # a real bf16 dispatch, so that combine has a handle and a y to check
    recv, _, handle, _, _ = buf.low_latency_dispatch(x, idx, M, E, use_fp8=False)
    y = recv.clone()
    for name, fn in real.items():
        setattr(buf, name, stub_for(fn, lib))
    try:
        res["fused_deep_moe, out= and ep_recv_count= given"] = best_us(
            lambda: buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E, out=out,
                                       ep_recv_count=ep), n)
        res["fused_deep_moe, output allocated"] = best_us(
            lambda: buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E), n)
        res["low_latency_dispatch (fp8; allocates its 5 outputs)"] = best_us(
            lambda: buf.low_latency_dispatch(x, idx, M, E), n)
        res["low_latency_combine, out= given"] = best_us(
            lambda: buf.low_latency_combine(y, idx, w, handle, out=out), n)
        stub = buf._fused_fn
        ref = buf._moe_args_ref
        ctx = buf._ctx
        res["the stub's ctypes call alone"] = best_us(lambda: stub(ctx, ref), n)
    finally:
        for name, fn in real.items():
            setattr(buf, name, fn)
    buf.low_latency_combine(y, idx, w, handle, out=out)  # the real dispatch's combine
    res["whole fused_deep_moe call (out= given), CPU backend"] = best_us(
        lambda: buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E, out=out), n // 10)
    # the bare C call reuses the argument struct of a call whose tensors are alive
    buf.fused_deep_moe(x, idx, w, w1, s1, w2, s2, M, E, out=out, ep_recv_count=ep)
    fused = buf._fused_fn
    res["bare ctypes dfm_fused_moe call, CPU backend"] = best_us(
        lambda: fused(buf._ctx, buf._moe_args_ref), n // 10)
    return res


def report(res):
    lines = ["torch %s, Python %s, CPU backend, 1 rank, T=1 H=%d I=%d E=%d K=%d; us per call "
             "(CPU time, best of 20 rounds), library stubbed unless named:"
             % (torch.__version__, sys.version.split()[0], H, I, E, K)]
    width = max(len(k) for k in res)
    lines += ["  %-*s %6.2f" % (width, k, v) for k, v in res.items()]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=20000, help="calls per figure (default 20000)")
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(here)), "python"))
    import torch.distributed as dist
    import deepfusedmoe as dfm
    fd, store = tempfile.mkstemp(prefix="dfm_overhead_")
    os.close(fd)
    os.unlink(store)
    dist.init_process_group("gloo", init_method="file://" + store, rank=0, world_size=1)
    try:
        g = torch.Generator().manual_seed(7)
        w13 = (torch.randn(E, 2 * I, H, generator=g) / math.sqrt(H)).to(torch.bfloat16)
        w2 = (torch.randn(E, H, I, generator=g) / math.sqrt(I)).to(torch.bfloat16)
        with dfm.Buffer(None, M, H, E, inter=I, max_topk=K) as buf:
            print(report(measure(buf, dfm.prepare_weights(w13, w2, "fp8"), args.n)))
    finally:
        dist.destroy_process_group()
        if os.path.exists(store):
            os.unlink(store)


if __name__ == "__main__":
    main()
