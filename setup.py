"""Build of the Python package deepfusedmoe (see pyproject.toml).

The package is pure Python over ctypes; what makes the wheel platform-specific
is libdfm.so, built here with the repository's Makefile (`make lib`) and copied
into the package, so one native build serves every Python 3 version (wheel tag
py3-none-<platform>).

Environment:
  DFM_LIBRARY=/path/libdfm.so  ship this library instead of building one
  DFM_CUDA=0|1                 passed to make as CUDA= (default: the Makefile's
                               choice: 1 when nvcc is found)
  DFM_BUILD_DIR=dir             make's BUILD= (default: build)
  DFM_MAKE_FLAGS="..."         more make arguments (e.g. ARCH=sm_90a WERROR=1)
"""
import os
import shlex
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def _version():
    text = open(os.path.join(ROOT, "include", "dfm.h")).read()
    parts = []
    for name in ("MAJOR", "MINOR", "PATCH"):
        tag = "#define DFM_VERSION_%s " % name
        parts.append(text.split(tag, 1)[1].split()[0])
    return ".".join(parts)


class build_py_with_lib(build_py):
    """build_py, then `make lib` and libdfm.so into the package."""

    def run(self):
        super().run()
        lib = os.environ.get("DFM_LIBRARY")
        if not lib:
            cmd = ["make", "-C", ROOT, "lib"]
            if os.environ.get("DFM_CUDA") in ("0", "1"):
                cmd.append("CUDA=" + os.environ["DFM_CUDA"])
            build_dir = os.environ.get("DFM_BUILD_DIR", "build")
            cmd.append("BUILD=" + build_dir)
            cmd += shlex.split(os.environ.get("DFM_MAKE_FLAGS", ""))
            self.announce("building libdfm.so: " + " ".join(cmd), level=2)
            subprocess.check_call(cmd)
            lib = os.path.join(ROOT, build_dir, "libdfm.so")
        if not os.path.exists(lib):
            raise RuntimeError("libdfm.so not found at %s" % lib)
        dst = os.path.join(self.build_lib, "deepfusedmoe", "libdfm.so")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(lib, dst)


cmdclass = {"build_py": build_py_with_lib}

try:  # a platform wheel (it carries libdfm.so), for any Python 3
    try:
        from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel

    class bdist_wheel(_bdist_wheel):
        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = bdist_wheel
except ImportError:
    pass

setup(
    name="deepfusedmoe",
    version=_version(),
    description="DeepFusedMoE: dispatch + grouped GEMM + SwiGLU + grouped GEMM + combine "
                "as one collective operator (ctypes layer over libdfm)",
    long_description=open(os.path.join(ROOT, "python", "README.md")).read()
    if os.path.exists(os.path.join(ROOT, "python", "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=["deepfusedmoe"],
    package_dir={"": "python"},
    package_data={"deepfusedmoe": ["libdfm.so"]},
    python_requires=">=3.8",
    # torch is required at run time but not declared: pip must not replace the
    # torch that the inference engine already runs (CUDA build, Debian's, ...).
    cmdclass=cmdclass,
    options={"build": {"build_base": os.path.join("python", "build")}},
    zip_safe=False,
)
