"""Build script for fastser's compiled extension ``fastser._C``.

CPU kernels are always compiled.  CUDA kernels are compiled when ``nvcc`` and a CUDA build of
torch are present; ``FASTSER_CUDA=0`` / ``FASTSER_CUDA=1`` forces either way.
``TORCH_CUDA_ARCH_LIST`` is respected (default: ``8.0;9.0+PTX;12.0``: A100, H100/H200 and
consumer Blackwell GPUs, with PTX that newer GPUs compile at load time).  The extension is
built against the installed torch (``pip install --no-build-isolation``), so it must be
rebuilt when torch is upgraded.

The extension is optional: fastser installs and runs without it, every op then served by its
reference PyTorch implementation (fastser/ops/fallback.py).  ``FASTSER_BUILD_EXTENSION``:

- unset: build it when torch is one the extension supports (2.11 to 2.14); when the build
  fails (no compiler, a compile error), warn and install the package without it;
- ``0``: do not build it;
- ``1``: build it whatever the torch version, and fail the install when the build fails.

``FASTSER_DEBUG=1``: a debug build (``-O0 -g``, nvcc ``-G``, host assertions, and fastser's
device-side assertions, FASTSER_DEVICE_ASSERT).  fastser/_build_info.py records what was built,
or why nothing was.
"""

import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX;12.0"
SUPPORTED_TORCH = ((2, 11), (2, 14))  # the torch versions the extension is built for
BUILD_INFO_PATH = os.path.join(ROOT, "fastser", "_build_info.py")


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


def _switch(name: str) -> str | None:
    """An environment switch that is unset, "0" or "1"."""
    value = os.environ.get(name)
    if value not in (None, "0", "1"):
        sys.exit(f"{name} must be 0 or 1, got {value!r}")
    return value


def _want_cuda() -> bool:
    forced = _switch("FASTSER_CUDA")
    available = CUDA_TOOLKIT is not None and torch.version.cuda is not None
    if forced is None:
        return available
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


def _write_build_info(info: dict, path: str = BUILD_INFO_PATH) -> None:
    """Record what was compiled (or why nothing was), for ``fastser info``."""
    with open(path, "w") as f:
        f.write('"""Written by setup.py at build time: what the compiled extension contains."""\n\n')
        f.write(f"BUILD_INFO = {info!r}\n")


def _skip_reason() -> str | None:
    """Why the extension is not to be built, or None."""
    build = _switch("FASTSER_BUILD_EXTENSION")
    if build == "0":
        return "FASTSER_BUILD_EXTENSION=0"
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    low, high = SUPPORTED_TORCH
    if build is None and not low <= version <= high:
        return (f"torch {torch.__version__} is outside the versions the extension supports "
                f"({low[0]}.{low[1]} to {high[0]}.{high[1]}; FASTSER_BUILD_EXTENSION=1 tries "
                "anyway)")
    return None


def _extension():
    with_cuda = _want_cuda()
    debug = _switch("FASTSER_DEBUG") == "1"
    cpp_sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    common = ["-fopenmp", "-fvisibility=hidden"]
    cxx_flags = (["-O0", "-g", "-UNDEBUG"] if debug else ["-O3"]) + common
    define_macros = [("FASTSER_DEBUG", None)] if debug else []
    include_dirs = [os.path.join(ROOT, "csrc")]
    info = {"extension": True, "torch_version": torch.__version__, "cuda": with_cuda,
            "cuda_archs": [], "nvcc": None, "debug": debug,
            "cxx_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI)}
    if with_cuda:
        archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        info.update(cuda_archs=archs.replace(";", " ").split(), nvcc=_nvcc_version())
        _write_build_info(info)
        cu_sources = sorted(glob.glob("csrc/**/*.cu", recursive=True))
        define_macros.append(("FASTSER_WITH_CUDA", None))
        nvcc_flags = (["-O0", "-G", "-g", "-UNDEBUG"] if debug else ["-O3", "-lineinfo"])
        return cpp_extension.CUDAExtension(
            "fastser._C",
            cpp_sources + cu_sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags,
                                "nvcc": nvcc_flags + ["--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    _write_build_info(info)
    return cpp_extension.CppExtension(
        "fastser._C",
        cpp_sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


def _without_extension(reason: str, build_lib: str | None = None) -> None:
    """Install the pure-Python package: record why (also in ``build_lib``, where build_py
    already copied the package), drop any stale in-place build."""
    for stale in glob.glob(os.path.join(ROOT, "fastser", "_C*.so")):
        os.remove(stale)
    info = {"extension": False, "reason": reason, "torch_version": torch.__version__}
    _write_build_info(info)
    copied = os.path.join(build_lib or "", "fastser", "_build_info.py")
    if build_lib and os.path.exists(copied):
        _write_build_info(info, copied)
    print(f"\nWARNING: fastser is installed without its compiled extension ({reason}); "
          "every op runs its reference PyTorch implementation.\n", file=sys.stderr)


class OptionalBuildExtension(cpp_extension.BuildExtension):
    """BuildExtension whose failure leaves a working pure-Python install (unless
    FASTSER_BUILD_EXTENSION=1 asked for the extension)."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # no compiler, compile or link errors: all alike
            if os.environ.get("FASTSER_BUILD_EXTENSION") == "1":
                raise
            message = " ".join(str(error).split())[:300]
            _without_extension(f"the build failed (pip install -v shows why): "
                               f"{type(error).__name__}: {message}",
                               None if self.inplace else self.build_lib)


SKIP_REASON = _skip_reason()
if SKIP_REASON is not None:
    _without_extension(SKIP_REASON)

setup(
    ext_modules=[] if SKIP_REASON is not None else [_extension()],
    cmdclass={"build_ext": OptionalBuildExtension},
)
