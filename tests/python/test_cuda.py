"""The Python layer on the CUDA backend: the same checks as on CPU, on 1, 2 and
4 GPUs (one process per GPU, NCCL group), plus CUDA-graph capture and replay
and the host overhead per call. Skipped without enough GPUs or without a CUDA
build of libdfm.so."""
import os
import tempfile

import pytest
import torch

import dfm_dist
from deepfusedmoe import _lib


def _cuda_ready():
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    try:
        if not _lib.lib().dfm_backend_available(_lib.BACKEND_CUDA):
            return False, "libdfm.so was built without the cuda backend (CUDA=1)"
    except ImportError as e:
        return False, str(e)
    return True, ""


_READY, _WHY = _cuda_ready()
pytestmark = pytest.mark.skipif(not _READY, reason=_WHY)


def gpus(n):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pytest.mark.skipif(count < n, reason="needs %d GPUs, found %d" % (n, count))


WORLDS = [pytest.param(1, marks=gpus(1)), pytest.param(2, marks=gpus(2)),
          pytest.param(4, marks=gpus(4))]


def _run(world, target, *args, timeout_s=300):
    dfm_dist.run(world, target, *args, backend="nccl", timeout_s=timeout_s)


@pytest.mark.parametrize("path", ["kernel", "pipeline"])
@pytest.mark.parametrize("mode", ["fp8", "int8", "bf16"])
@pytest.mark.parametrize("world", WORLDS)
def test_cuda_fused_numerics(world, mode, path, seed, monkeypatch):
    """fused_deep_moe against the float64 oracle on both CUDA paths, chosen by the
    Buffer's path: one persistent kernel a call (the library's default) and the
    pipeline of launches. The environment says the opposite (DFM_CUDA_FUSED, which
    the spawned ranks inherit), and the config must win: each rank checks the way
    its context runs."""
    if path == "pipeline":
        monkeypatch.delenv("DFM_CUDA_FUSED", raising=False)
    else:
        monkeypatch.setenv("DFM_CUDA_FUSED", "0")
    _run(world, "dfm_workers:fused_numerics_on_path", seed, mode, path)


@pytest.mark.parametrize("world", WORLDS)
def test_cuda_dispatch_combine(world, seed):
    _run(world, "dfm_workers:dispatch_combine", seed, "cuda")


@pytest.mark.parametrize("world", WORLDS)
def test_cuda_graph_capture_replay(world, seed):
    _run(world, "dfm_workers:graph_replay", seed)


@pytest.mark.parametrize("world", [w for w in WORLDS if w.values[0] >= 2])
def test_cuda_fused_kernel_graph_replay_1000(world, seed):
    """The one-kernel operator (the default; DFM_CUDA_FUSED=1) captured once and replayed 1000
    times, six input sets in turn, every replay checked (sequence numbers live in
    device memory, so a replay is a new call)."""
    _run(world, "dfm_workers:graph_replay", seed, 1000, True, 6, timeout_s=600)


@pytest.mark.parametrize("world", [pytest.param(2, marks=gpus(2))])
def test_cuda_invalid_experts_async_error(world, seed):
    _run(world, "dfm_workers:invalid_experts", seed, "cuda")


@pytest.mark.parametrize("world", [pytest.param(2, marks=gpus(2))])
def test_cuda_peer_timeout(world, seed):
    _run(world, "dfm_workers:peer_timeout", seed, "cuda", timeout_s=180)


@pytest.mark.parametrize("world", [pytest.param(1, marks=gpus(1)), pytest.param(2, marks=gpus(2))])
def test_cuda_host_overhead(world, seed, capsys):
    fd, path = tempfile.mkstemp(prefix="dfm_overhead_")
    os.close(fd)
    try:
        _run(world, "dfm_workers:cuda_host_overhead", seed, path)
        with open(path) as f:
            line = f.read().strip()
    finally:
        os.unlink(path)
    with capsys.disabled():
        print("\n[host overhead] " + line)


def test_cuda_nccl_is_torchs():
    """The NCCL that libdfm.so binds to is >= 2.28.7 (torch's nvidia.nccl copy)."""
    _lib.lib()
    ver, path = _lib.loaded_nccl()
    assert ver is not None, "no libnccl loaded in the process"
    assert ver >= _lib.NCCL_MIN_VERSION, "NCCL %s from %s" % (_lib.nccl_version_string(ver), path)
