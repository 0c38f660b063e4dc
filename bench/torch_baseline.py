#!/usr/bin/env python3
"""torch_baseline.py - the torch baseline of PERF.md, timed on the same GPUs and
the same tokens as bench/dfm_bench.cu.

The layer the way a user without a fused kernel writes it, one process per GPU:
  dispatch  per-token FP8 quantization (SPEC 3.1 formulas), slots sorted by
            destination rank, the split sizes exchanged with all_to_all_single
            and brought to the host (.tolist(): a host synchronization), then one
            NCCL all_to_all_single of packed rows (codes | fp32 scale | int32
            local expert), unpacked and sorted by local expert;
  gemms     torch._scaled_grouped_mm FP8 rowwise (A per token, B per output
            channel) for gate+up, SwiGLU and per-token requantization in torch,
            torch._scaled_grouped_mm for down (bf16 mode: torch._grouped_mm;
            where _scaled_grouped_mm is refused, a loop of torch._scaled_mm per
            expert, and the CSV says "loop");
  combine   all_to_all_single back with the reversed splits, then
            index_add_ of the weighted rows into an fp32 [T, H], cast to bf16.
INT8 has no torch grouped GEMM: those rows are reported as n/a.

Times are CUDA events around each iteration after a dist.barrier(), weights
rotated between >= 2 sets (>= 512 MB apart), medians over -n iterations after
-w warm-up, then the max over ranks. Before timing, --check runs a small layer
against a float64 reference of the same quantized math (per rank, rel. L2;
the reference rounds h and y to bf16 as the torch GEMMs do).

    torch_baseline.py --routing DIR [--out CSV] [-w 5] [-n 30] [--check]

DIR is what `dfm_bench -d DIR` wrote (manifest.csv and the routing files).
"""
import argparse
import csv
import os
import shutil
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
W_SCALE = 0.0115  # weight scales, as dfm_bench (memset 0x3c)
CHECK_TOL = 2e-2


def log(rank, *a):
    if rank == 0:
        print(*a, flush=True)


def random_codes(shape, mode, gen, device):
    """Random weight codes, never NaN and never zero-filled (as dfm_bench)."""
    if mode == "fp8":
        b = torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=gen)
        b.bitwise_and_(0x87).bitwise_or_(0x30)  # |v| in 0.5..0.94, random sign
        return b.view(FP8)
    return (torch.rand(shape, device=device, generator=gen, dtype=torch.float32) * 2 - 1).mul_(
        0.0156).to(torch.bfloat16)


def quantize_rows(v):
    """SPEC 3.1 FP8: s = amax / 448, code = e4m3(v / s); amax 0 -> s 0, codes 0."""
    amax = v.abs().amax(dim=1)
    s = amax / FP8_MAX
    safe = torch.where(s > 0, s, torch.ones_like(s))
    q = (v / safe[:, None]).to(FP8)
    return q, s


class Experts:
    """The G local experts of one rank: w13 [G, 2I, H] (gate rows, then up rows,
    checkpoint order), w2 [G, H, I], per-output-channel scales."""

    def __init__(self, G, H, I, mode, gen, device, w13=None, w2=None):
        self.G, self.H, self.I, self.mode = G, H, I, mode
        self.w13 = w13 if w13 is not None else random_codes((G, 2 * I, H), mode, gen, device)
        self.w2 = w2 if w2 is not None else random_codes((G, H, I), mode, gen, device)
        self.s13 = torch.full((G, 2 * I), W_SCALE, device=device)
        self.s2 = torch.full((G, H), W_SCALE, device=device)
        # column-major views as the grouped GEMMs want them: [G, K, N], stride(-2) == 1
        self.b1 = self.w13.transpose(1, 2)
        self.b2 = self.w2.transpose(1, 2)


class Gemm:
    """Grouped GEMM (rows of A grouped by expert, offs = cumulative ends)."""

    def __init__(self, impl):
        self.impl = impl  # "grouped" or "loop"

    def fp8(self, a, sa, b, sb, offs, counts):
        if self.impl == "grouped":
            return torch._scaled_grouped_mm(a, b, sa, sb, offs=offs, out_dtype=torch.bfloat16)
        out = torch.empty(a.shape[0], b.shape[2], dtype=torch.bfloat16, device=a.device)
        begin = 0
        for g, n in enumerate(counts):
            if n:
                out[begin:begin + n] = torch._scaled_mm(
                    a[begin:begin + n], b[g], scale_a=sa[begin:begin + n, None].contiguous(),
                    scale_b=sb[g][None, :].contiguous(), out_dtype=torch.bfloat16)
            begin += n
        return out

    def bf16(self, a, b, offs, counts):
        if self.impl == "grouped":
            return torch._grouped_mm(a, b, offs=offs)
        out = torch.empty(a.shape[0], b.shape[2], dtype=torch.bfloat16, device=a.device)
        begin = 0
        for g, n in enumerate(counts):
            if n:
                out[begin:begin + n] = a[begin:begin + n] @ b[g]
            begin += n
        return out


def layer(x, idx, wts, ex, R, gemm, ev=None):
    """One MoE layer on this rank: x [T, H] bf16, idx [T, K] int64 (-1 unused),
    wts [T, K] f32. Returns out [T, H] bf16. ev: four CUDA events or None."""
    dev = x.device
    T, K = idx.shape
    G, H, I, mode = ex.G, ex.H, ex.I, ex.mode
    if ev:
        ev[0].record()
    # ---- dispatch
    if mode == "fp8":
        q, s = quantize_rows(x.float())
        code_bytes = q.view(torch.uint8)
    else:
        code_bytes = x.view(torch.uint8)
        s = torch.ones(T, device=dev)
    cb = code_bytes.shape[1]
    flat = idx.reshape(-1)
    E = G * R
    key = torch.where(flat >= 0, flat, torch.full_like(flat, E))  # unused slots last
    order = torch.argsort(key, stable=True)
    dest = torch.div(key, G, rounding_mode="floor")  # R for unused
    send = torch.bincount(dest, minlength=R + 1)[:R]
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send)
    send_l, recv_l = send.tolist(), recv.tolist()  # host synchronization
    n_send, n_recv = sum(send_l), sum(recv_l)
    slots = order[:n_send]
    tok = torch.div(slots, K, rounding_mode="floor")
    local = (flat[slots] % G).to(torch.int32)
    payload = torch.cat([code_bytes[tok], s[tok].view(torch.uint8).reshape(n_send, 4),
                         local.view(torch.uint8).reshape(n_send, 4)], dim=1)
    rbuf = torch.empty(n_recv, cb + 8, dtype=torch.uint8, device=dev)
    dist.all_to_all_single(rbuf, payload, output_split_sizes=recv_l, input_split_sizes=send_l)
    r_local = rbuf[:, cb + 4:cb + 8].contiguous().view(torch.int32).reshape(n_recv).long()
    perm = torch.argsort(r_local, stable=True)
    cnt = torch.bincount(r_local, minlength=G)
    offs = torch.cumsum(cnt, 0).to(torch.int32)
    counts = cnt.tolist() if gemm.impl == "loop" else None
    a_bytes = rbuf[perm, :cb].contiguous()
    if ev:
        ev[1].record()
    # ---- expert GEMMs
    if n_recv == 0:
        y = torch.empty(0, H, dtype=torch.bfloat16, device=dev)
    elif mode == "fp8":
        a = a_bytes.view(FP8)
        sa = rbuf[perm, cb:cb + 4].contiguous().view(torch.float32).reshape(n_recv)
        h = gemm.fp8(a, sa, ex.b1, ex.s13, offs, counts)
        act = torch.nn.functional.silu(h[:, :I].float()) * h[:, I:].float()
        qb, sb = quantize_rows(act)
        y = gemm.fp8(qb, sb, ex.b2, ex.s2, offs, counts)
    else:
        a = a_bytes.view(torch.bfloat16)
        h = gemm.bf16(a, ex.b1, offs, counts)
        act = (torch.nn.functional.silu(h[:, :I].float()) * h[:, I:].float()).to(torch.bfloat16)
        y = gemm.bf16(act, ex.b2, offs, counts)
    if ev:
        ev[2].record()
    # ---- combine
    y_recv = torch.empty_like(y)
    y_recv[perm] = y
    back = torch.empty(n_send, H, dtype=torch.bfloat16, device=dev)
    dist.all_to_all_single(back, y_recv, output_split_sizes=send_l, input_split_sizes=recv_l)
    out = torch.zeros(T, H, dtype=torch.float32, device=dev)
    out.index_add_(0, tok, back.float() * wts.reshape(-1)[slots][:, None])
    out = out.to(torch.bfloat16)
    if ev:
        ev[3].record()
    return out


def reference(x, idx, wts, w13, w2, G, mode):
    """float64 reference on one rank's tokens, given every expert's weights
    (all ranks): quantized activations dequantized, SPEC 3.2 otherwise."""
    T, K = idx.shape
    H = x.shape[1]
    I = w2.shape[2]
    out = torch.zeros(T, H, dtype=torch.float64, device=x.device)
    if mode == "fp8":
        q, s = quantize_rows(x.float())
        xd = q.double() * s.double()[:, None]
    else:
        xd = x.double()
    for t in range(T):
        for k in range(K):
            e = int(idx[t, k])
            if e < 0:
                continue
            ws = W_SCALE if mode == "fp8" else 1.0  # bf16 mode has no weight scales
            # h rounded to bf16: the torch GEMMs (like any bf16-output GEMM) emit bf16
            h = ((w13[e].double() * ws) @ xd[t]).to(torch.bfloat16).double()
            act = torch.nn.functional.silu(h[:I]) * h[I:]
            if mode == "fp8":
                qa, sa = quantize_rows(act.float()[None, :])
                act = qa.double()[0] * float(sa[0])
            else:
                act = act.to(torch.bfloat16).double()
            y = ((w2[e].double() * ws) @ act).to(torch.bfloat16).double()
            out[t] += float(wts[t, k]) * y
    return out


def self_check(rank, R, gemm, device):
    """Small layer, every rank's result against the float64 reference."""
    res = []
    for mode in ("fp8", "bf16"):
        H, I, K, G, T = 256, 128, 4, 4, 16
        E = G * R
        gen = torch.Generator(device=device)
        gen.manual_seed(1234)
        w13 = random_codes((E, 2 * I, H), mode, gen, device)
        w2 = random_codes((E, H, I), mode, gen, device)
        ex = Experts(G, H, I, mode, None, device, w13[rank * G:(rank + 1) * G].contiguous(),
                     w2[rank * G:(rank + 1) * G].contiguous())
        g2 = torch.Generator(device=device)
        g2.manual_seed(99 + rank)
        x = (torch.randn(T, H, device=device, generator=g2)).to(torch.bfloat16)
        scores = torch.rand(T, E, device=device, generator=g2)
        idx = scores.topk(K, dim=1).indices
        idx[3, 1] = -1
        idx[5] = -1
        wts = torch.rand(T, K, device=device, generator=g2)
        out = layer(x, idx, wts, ex, R, gemm)
        ref = reference(x, idx, wts, w13, w2, G, mode)
        err = float((out.double() - ref).norm() / ref.norm().clamp_min(1e-30))
        zero_ok = bool((out[5] == 0).all())
        t = torch.tensor([err if zero_ok else 1e9], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        res.append((mode, float(t)))
    return res


def probe_gemm(device):
    """Whether torch._scaled_grouped_mm takes our shapes here (else a loop)."""
    try:
        G, H, N = 2, 128, 256
        a = torch.randn(40, H, device=device).to(FP8)
        b = torch.randn(G, N, H, device=device).to(FP8).transpose(1, 2)
        sa = torch.ones(40, device=device)
        sb = torch.ones(G, N, device=device)
        offs = torch.tensor([24, 40], dtype=torch.int32, device=device)
        out = torch._scaled_grouped_mm(a, b, sa, sb, offs=offs, out_dtype=torch.bfloat16)
        ref = a.float() @ b[0].float()
        ref[24:] = a[24:].float() @ b[1].float()
        torch.cuda.synchronize()
        if float((out.float() - ref).norm() / ref.norm()) > 1e-2:
            return "loop", "torch._scaled_grouped_mm gave a wrong result"
        return "grouped", ""
    except Exception as e:  # noqa: BLE001 - any refusal means the fallback
        return "loop", f"torch._scaled_grouped_mm refused: {type(e).__name__}: {e}"


def worker(rank, R, args, rows, rdv, q):
    torch.cuda.set_device(rank)
    device = torch.device("cuda", rank)
    # a file rendezvous: no TCP port to collide with the NCCL sockets of a
    # benchmark that ran just before (a free port picked then released can be
    # taken again before the store listens: EADDRINUSE)
    dist.init_process_group("nccl", init_method="file://" + rdv, rank=rank, world_size=R,
                            device_id=device)
    impl, why = probe_gemm(device)
    nv = torch.cuda.nccl.version()
    nv = ".".join(map(str, nv)) if isinstance(nv, tuple) else str(nv)
    log(rank, f"# torch {torch.__version__}, NCCL {nv}, "
        f"{R} x {torch.cuda.get_device_name(device)}, grouped GEMM: {impl} {why}")
    gemm = Gemm(impl)
    if args.check:
        try:
            checks = self_check(rank, R, gemm, device)
        except Exception as e:  # noqa: BLE001 - report, then time anyway
            print(f"rank {rank}: check raised {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            checks = [("fp8", float("inf")), ("bf16", float("inf"))]
        for mode, err in checks:
            log(rank, f"# check {mode}: rel. L2 error vs float64 reference {err:.2e} "
                f"({'ok' if err <= CHECK_TOL else 'FAILED'})")
            if rank == 0:
                q.put(("check", mode, err))
    by_cfg = {}
    for r in rows:
        by_cfg.setdefault(r["config"], []).append(r)
    results = []
    for name, cases in by_cfg.items():
        c = cases[0]
        H, I, E, K, mode = int(c["H"]), int(c["I"]), int(c["E"]), int(c["K"]), c["mode"]
        G = E // R
        if mode not in ("fp8", "bf16"):
            for cs in cases:
                results.append((cs, None, "n/a (no torch grouped GEMM for int8)"))
            continue
        gen = torch.Generator(device=device)
        gen.manual_seed(1000 + rank)
        wbytes = G * 3 * I * H * (1 if mode == "fp8" else 2)
        nsets = max(2, min(8, (512 << 20) // wbytes + 1))
        while nsets > 1 and nsets * wbytes > (30 << 30):
            nsets -= 1
        sets = [Experts(G, H, I, mode, gen, device) for _ in range(nsets)]
        M = int(c["M"])
        x_all = (torch.rand(M, H, device=device, generator=gen) * 2 - 1).to(torch.bfloat16)
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        for cs in cases:
            T = int(cs["T"])
            raw = open(os.path.join(args.routing, f"{cs['prefix']}.r{rank}.bin"), "rb").read()
            idx = torch.frombuffer(bytearray(raw[:T * K * 8]), dtype=torch.int64).reshape(T, K)
            wts = torch.frombuffer(bytearray(raw[T * K * 8:]), dtype=torch.float32).reshape(T, K)
            idx, wts = idx.to(device), wts.to(device)
            x = x_all[:T].contiguous()
            times = [[], [], [], []]
            ok = True
            try:
                for it in range(args.warmup + args.iters):
                    dist.barrier()
                    torch.cuda.synchronize()
                    layer(x, idx, wts, sets[it % nsets], R, gemm, ev)
                    ev[3].synchronize()
                    if it >= args.warmup:
                        times[0].append(ev[0].elapsed_time(ev[3]) * 1e3)
                        times[1].append(ev[0].elapsed_time(ev[1]) * 1e3)
                        times[2].append(ev[1].elapsed_time(ev[2]) * 1e3)
                        times[3].append(ev[2].elapsed_time(ev[3]) * 1e3)
            except Exception as e:  # noqa: BLE001 - report the row, go on
                print(f"rank {rank} {name} T={T} {cs['routing']}: {type(e).__name__}: {e}",
                      file=sys.stderr, flush=True)
                ok = False
            med = [sorted(v)[len(v) // 2] if ok and v else float("nan") for v in times]
            t = torch.tensor(med + [0.0 if ok else 1.0], device=device, dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            vals = t.tolist()
            results.append((cs, vals[:4] if vals[4] == 0 else None,
                            impl if vals[4] == 0 else "failed"))
            log(rank, f"{name:15s} {R:5d} {T:5d} {cs['routing']:8s} "
                + " ".join(f"{v:9.1f}" for v in vals[:4]))
        del sets
        torch.cuda.empty_cache()
    if rank == 0:
        q.put(("rows", results))
    dist.barrier()
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routing", required=True, help="directory written by dfm_bench -d")
    ap.add_argument("--out", default="torch.csv")
    ap.add_argument("-w", "--warmup", type=int, default=5)
    ap.add_argument("-n", "--iters", type=int, default=30)
    ap.add_argument("--check", action="store_true", help="small correctness check first")
    args = ap.parse_args()
    with open(os.path.join(args.routing, "manifest.csv")) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit("torch_baseline: empty manifest")
    R = int(rows[0]["ranks"])
    if torch.cuda.device_count() < R:
        sys.exit(f"torch_baseline: {R} ranks but {torch.cuda.device_count()} GPUs")
    print(f"# torch baseline: median of {args.iters} after {args.warmup} warm-up, max over "
          f"ranks, us\n{'config':15s} {'ranks':>5s} {'T':>5s} {'routing':8s} "
          f"{'layer':>9s} {'dispatch':>9s} {'gemms':>9s} {'combine':>9s}", flush=True)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = time.time()
    rdv_dir = tempfile.mkdtemp(prefix="dfm_torch_rdv_")
    rdv = os.path.join(rdv_dir, "rendezvous")
    pc = mp.start_processes(worker, args=(R, args, rows, rdv, q), nprocs=R, join=False,
                            start_method="spawn")
    results, checks = None, []
    while results is None:
        try:
            item = q.get(timeout=5)
        except Exception:  # noqa: BLE001 - queue.Empty: see whether workers died
            if pc.join(timeout=0.1):
                break
            continue
        if item[0] == "check":
            checks.append(item[1:])
        else:
            results = item[1]
    while not pc.join():
        pass
    shutil.rmtree(rdv_dir, ignore_errors=True)
    if results is None:
        sys.exit("torch_baseline: workers ended without results")
    check = ";".join(f"{m}:{e:.1e}" for m, e in checks)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "ranks", "T", "routing", "torch_layer_us", "torch_dispatch_us",
                     "torch_gemms_us", "torch_combine_us", "torch_gemm_impl", "torch_check"])
        for cs, vals, impl in results:
            v = [f"{x:.1f}" for x in vals] if vals else ["", "", "", ""]
            w.writerow([cs["config"], cs["ranks"], cs["T"], cs["routing"], *v, impl, check])
    print(f"# torch baseline done in {time.time() - t0:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
