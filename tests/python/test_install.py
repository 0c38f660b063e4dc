"""The package as users install it (Issue 6, item 1): ``pip install
--no-build-isolation`` of a copy of this repository, offline (no index), with the
interpreter's own setuptools, into a fresh folder; the install carries libdfm.so,
and a fresh interpreter that sees only that folder imports the package and loads
the library shipped inside it.

The copy ships the library under test (DFM_LIBRARY, as check-python sets it:
setup.py then runs no make); without it setup.py builds one with CUDA=0.
Skipped where this interpreter has no pip, or no way to build a wheel (setuptools
older than 70.1 without the ``wheel`` package).
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO


def _can_build_wheels():
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        return "no pip for %s" % sys.executable
    try:
        import setuptools
    except ImportError:
        return "no setuptools for %s" % sys.executable
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if version < (70, 1):
        try:
            import wheel  # noqa: F401  (setuptools < 70.1 builds wheels with it)
        except ImportError:
            return "setuptools %s without the wheel package" % setuptools.__version__
    return None


def test_pip_install_no_build_isolation(tmp_path):
    why = _can_build_wheels()
    if why:
        pytest.skip(why)
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "build-*", "__pycache__", "*.egg-info", "docs", "bench", "dev"))
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    if not env.get("DFM_LIBRARY"):
        env["DFM_CUDA"] = "0"
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                        "--no-index", "--target", str(site), str(src)],
                       env=env, cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, "pip install failed:\n" + r.stdout[-3000:] + r.stderr[-3000:]
    shipped = site / "deepfusedmoe" / "libdfm.so"
    assert shipped.is_file(), "the install has no libdfm.so: " + str(sorted(os.listdir(site)))

    env = {k: v for k, v in os.environ.items() if k not in ("DFM_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    code = ("import deepfusedmoe, deepfusedmoe._lib as l; "
            "print(deepfusedmoe.__file__); print(l.library_path()); "
            "print(l.status_string(0))")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True)
    assert r.returncode == 0, "import from the install failed:\n" + r.stderr[-3000:]
    module, library, status = r.stdout.splitlines()[:3]
    assert module.startswith(str(site)), module
    assert os.path.realpath(library) == os.path.realpath(str(shipped)), library
    assert status, "dfm_status_string(0) is empty"
