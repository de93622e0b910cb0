"""Build script for fastser's compiled extension ``fastser._C``.

CPU kernels are always compiled.  CUDA kernels are compiled when ``nvcc`` and a CUDA
build of torch are present; ``FASTSER_CUDA=0`` / ``FASTSER_CUDA=1`` forces either way.
``TORCH_CUDA_ARCH_LIST`` is respected (default: ``8.0;9.0``).  The extension is built
against the installed torch (``pip install --no-build-isolation``), so it must be rebuilt
when torch is upgraded.
"""

import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0"


def _find_cuda_home() -> str | None:
    """The CUDA toolkit: CUDA_HOME / CUDA_PATH if set, else the toolkit of the nvcc on PATH,
    else /usr/local/cuda; a candidate counts only if it holds bin/nvcc and the CUDA headers
    (an nvcc on PATH may be a wrapper script outside the toolkit)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for home in filter(None, candidates):
        if os.path.exists(os.path.join(home, "bin", "nvcc")) and os.path.exists(
            os.path.join(home, "include", "cuda_runtime.h")
        ):
            return home
    return None


# torch.utils.cpp_extension reads CUDA_HOME when it is imported.
CUDA_TOOLKIT = _find_cuda_home()
if CUDA_TOOLKIT:
    os.environ["CUDA_HOME"] = CUDA_TOOLKIT

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402


def _want_cuda() -> bool:
    forced = os.environ.get("FASTSER_CUDA")
    available = CUDA_TOOLKIT is not None and torch.version.cuda is not None
    if forced is None:
        return available
    if forced not in ("0", "1"):
        sys.exit(f"FASTSER_CUDA must be 0 or 1, got {forced!r}")
    if forced == "1" and not available:
        sys.exit(
            "FASTSER_CUDA=1 but CUDA cannot be built: "
            f"CUDA toolkit={CUDA_TOOLKIT!r}, torch.version.cuda={torch.version.cuda!r}"
        )
    return forced == "1"


def _nvcc_version() -> str:
    nvcc = os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def _write_build_info(with_cuda: bool, archs: str) -> None:
    """Record what was compiled, for ``fastser.show_config()``."""
    info = {
        "torch_version": torch.__version__,
        "cuda": with_cuda,
        "cuda_archs": archs.replace(";", " ").split() if with_cuda else [],
        "nvcc": _nvcc_version() if with_cuda else None,
        "cxx_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
    }
    path = os.path.join(ROOT, "fastser", "_build_info.py")
    with open(path, "w") as f:
        f.write('"""Written by setup.py at build time: what the compiled extension contains."""\n\n')
        f.write(f"BUILD_INFO = {info!r}\n")


def _extension():
    with_cuda = _want_cuda()
    cpp_sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cxx_flags = ["-O3", "-fopenmp", "-fvisibility=hidden"]
    define_macros = []
    if with_cuda:
        archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        _write_build_info(True, archs)
        cu_sources = sorted(glob.glob("csrc/**/*.cu", recursive=True))
        define_macros.append(("FASTSER_WITH_CUDA", None))
        return cpp_extension.CUDAExtension(
            "fastser._C",
            cpp_sources + cu_sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr"],
            },
            extra_link_args=["-fopenmp"],
        )
    _write_build_info(False, "")
    return cpp_extension.CppExtension(
        "fastser._C",
        cpp_sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
