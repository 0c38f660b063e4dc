"""Run a function on R ranks of a fresh torch.distributed world (spawned
processes, gloo or nccl over a file:// store) with a hard deadline.

A worker is ``module:function``; it is called as fn(rank, world_size, *args)
after init_process_group. An exception in any rank fails the run with that
rank's traceback; a run past the deadline is killed (no hang)."""
import importlib
import os
import sys
import tempfile
import time
from datetime import timedelta

import torch.multiprocessing as mp


def _entry(rank, world_size, init_file, backend, target, args, sys_path):
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    import torch
    import torch.distributed as dist
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method="file://" + init_file, rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=120))
    try:
        mod_name, fn_name = target.split(":")
        fn = getattr(importlib.import_module(mod_name), fn_name)
        fn(rank, world_size, *args)
    finally:
        try:
            dist.destroy_process_group()
        except Exception:
            pass


def run(world_size, target, *args, backend="gloo", timeout_s=300):
    """Run ``target`` ("module:function") on world_size spawned ranks."""
    fd, init_file = tempfile.mkstemp(prefix="dfm_store_")
    os.close(fd)
    os.unlink(init_file)
    here = os.path.dirname(os.path.abspath(__file__))
    ctx = mp.start_processes(_entry,
                             args=(world_size, init_file, backend, target, args,
                                   [here] + list(sys.path)),
                             nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=0.5):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.kill()
                raise TimeoutError("%s on %d ranks did not finish in %d s"
                                   % (target, world_size, timeout_s))
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
        if os.path.exists(init_file):
            os.unlink(init_file)
