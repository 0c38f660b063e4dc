"""pytest setup for the Python layer's tests.

- Imports the build tree's ``deepfusedmoe`` (python/ of this repository, which
  finds build/libdfm.so; DFM_LIBRARY overrides), or with DFM_TEST_INSTALLED=1
  the installed package.
- ``world1``: a one-rank gloo world in the pytest process itself (bad-input,
  weight and overhead tests); multi-rank tests spawn their own worlds through
  dfm_dist.run().
- ``seed``: fresh per run (DFM_TEST_SEED=n repeats one); printed on failure.
"""
import os
import random
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
if os.environ.get("DFM_TEST_INSTALLED") != "1":
    sys.path.insert(0, os.path.join(REPO, "python"))
import deepfusedmoe  # noqa: E402,F401

_SEED = int(os.environ.get("DFM_TEST_SEED", random.SystemRandom().randrange(1, 2 ** 31)))


def pytest_report_header(config):
    import torch
    from deepfusedmoe import _lib
    try:
        path = _lib.library_path()
    except ImportError as e:
        path = "NOT LOADED (%s)" % e
    return ["deepfusedmoe: %s, libdfm: %s" % (os.path.dirname(deepfusedmoe.__file__), path),
            "torch %s, cuda devices: %d, test seed: %d (DFM_TEST_SEED=%d repeats it)"
            % (torch.__version__, torch.cuda.device_count() if torch.cuda.is_available() else 0,
               _SEED, _SEED)]


@pytest.fixture
def seed():
    return _SEED


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        rep.sections.append(("seed", "DFM_TEST_SEED=%d" % _SEED))


@pytest.fixture(scope="session")
def world1():
    """torch.distributed with one gloo rank in this process."""
    import torch.distributed as dist
    if not dist.is_initialized():
        fd, path = tempfile.mkstemp(prefix="dfm_world1_")
        os.close(fd)
        os.unlink(path)
        dist.init_process_group("gloo", init_method="file://" + path, rank=0, world_size=1)
    yield dist
