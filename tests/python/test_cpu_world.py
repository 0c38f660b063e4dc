"""The CPU backend through the Python layer, on 2 and 4 spawned processes (gloo):
numerics against the float64 oracle, dispatch/combine, -1 and duplicate slots,
asynchronous errors, timeouts and configuration mismatches."""
import pytest

import dfm_dist

WORLDS = (2, 4)


@pytest.mark.parametrize("mode", ["fp8", "int8", "bf16"])
@pytest.mark.parametrize("world", WORLDS)
def test_fused_numerics(world, mode, seed):
    dfm_dist.run(world, "dfm_workers:fused_numerics", seed, mode, "cpu")


def test_fused_numerics_one_rank(seed):
    dfm_dist.run(1, "dfm_workers:fused_numerics", seed, "fp8", "cpu")


@pytest.mark.parametrize("world", WORLDS)
def test_dispatch_combine(world, seed):
    dfm_dist.run(world, "dfm_workers:dispatch_combine", seed, "cpu")


@pytest.mark.parametrize("world", WORLDS)
def test_invalid_experts_async_error(world, seed):
    dfm_dist.run(world, "dfm_workers:invalid_experts", seed, "cpu")


def test_peer_timeout(seed):
    dfm_dist.run(2, "dfm_workers:peer_timeout", seed, "cpu", timeout_s=120)


def test_config_mismatch(seed):
    dfm_dist.run(2, "dfm_workers:config_mismatch", seed, "cpu", timeout_s=120)
