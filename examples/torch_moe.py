"""One expert-parallel MoE layer with DeepFusedMoE from a torch.distributed program.

    torchrun --nproc_per_node=4 examples/torch_moe.py            # 4 GPUs (NCCL)
    python3 examples/torch_moe.py --cpu --nprocs 2                # 2 CPU processes (gloo)

Without torchrun's environment (RANK, ...), --nprocs N spawns the ranks itself
(torch 1.13's torchrun does not start under Python 3.11). Each
rank holds G = E / R experts; every rank routes its tokens to the top-k of all E
experts; fused_deep_moe does dispatch, the experts' FP8 GEMMs with SwiGLU and the
weighted combine in one collective call. The result is checked against plain
torch math on the unquantized weights.
"""
import argparse
import os

import torch
import torch.distributed as dist

import deepfusedmoe as dfm


def main():
    args = parse_args()
    if "RANK" not in os.environ:  # not under torchrun: start the ranks here
        import socket
        import torch.multiprocessing as mp
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        mp.spawn(run_rank, args=(args, port), nprocs=args.nprocs)
    else:
        run_rank(None, args, None)


def run_rank(local_rank, args, port):
    if local_rank is not None:
        os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank),
                          WORLD_SIZE=str(args.nprocs), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
    layer(args)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--cpu", action="store_true", help="CPU backend over gloo")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--inter", type=int, default=512)
    p.add_argument("--experts-per-rank", type=int, default=4)
    p.add_argument("--topk", type=int, default=4)
    p.add_argument("--quant", default="fp8", choices=["fp8", "int8", "bf16"])
    p.add_argument("--nprocs", type=int, default=2, help="ranks to spawn without torchrun")
    return p.parse_args()


def layer(args):

    use_cuda = torch.cuda.is_available() and not args.cpu
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda") if use_cuda else torch.device("cpu")

    T, H, I = args.tokens, args.hidden, args.inter
    G = args.experts_per_rank
    E, K = G * world, min(args.topk, G * world)
    num_max = T  # the largest T any rank passes

    # One Buffer per layer shape, created once (collective); it sizes every buffer.
    buf = dfm.Buffer(dist.group.WORLD, num_max, H, E, inter=I, max_topk=K)

    # This rank's experts: checkpoint w13 [G, 2I, H] (gate rows, then up rows), w2 [G, H, I].
    gen = torch.Generator().manual_seed(1234 + rank)
    w13 = (torch.randn(G, 2 * I, H, generator=gen) / H ** 0.5).to(torch.bfloat16)
    w2 = (torch.randn(G, H, I, generator=gen) / I ** 0.5).to(torch.bfloat16)
    w1q, s1, w2q, s2 = (t.to(device) for t in dfm.prepare_weights(w13, w2, args.quant))

    # This rank's tokens and their routing (top-k of router scores).
    x = torch.randn(T, H, generator=gen).to(torch.bfloat16).to(device)
    scores = torch.randn(T, E, generator=gen).softmax(dim=1)
    topk_weights, topk_idx = scores.topk(K, dim=1)
    topk_idx, topk_weights = topk_idx.to(device), topk_weights.to(device)

    out, event, hook = buf.fused_deep_moe(x, topk_idx, topk_weights, w1q, s1, w2q, s2,
                                          num_max, E, quant=args.quant)
    event.current_stream_wait()  # orders the current stream after the op (no-op on CPU)

    # Check against plain torch math: every rank needs every expert's weights for that.
    # (as float32, exact: gloo has no bf16)
    all_w13 = [torch.empty(w13.shape, device=device) for _ in range(world)]
    all_w2 = [torch.empty(w2.shape, device=device) for _ in range(world)]
    dist.all_gather(all_w13, w13.float().to(device))
    dist.all_gather(all_w2, w2.float().to(device))
    W13, W2 = torch.cat(all_w13).double(), torch.cat(all_w2).double()
    ref = torch.zeros(T, H, dtype=torch.float64, device=device)
    for k in range(K):
        e = topk_idx[:, k]
        h = torch.einsum("th,tnh->tn", x.double(), W13[e])
        act = torch.nn.functional.silu(h[:, :I]) * h[:, I:]
        ref += topk_weights[:, k, None].double() * torch.einsum("ti,thi->th", act, W2[e])
    err = ((out.double() - ref).norm() / ref.norm()).item()
    print("rank %d/%d (%s, %s): out %s, relative error vs unquantized math %.2e"
          % (rank, world, "cuda" if use_cuda else "cpu", args.quant, tuple(out.shape), err))
    assert err < (0.1 if args.quant != "bf16" else 1e-2)

    buf.destroy()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
