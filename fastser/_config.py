"""What this fastser installation contains: ``fastser.show_config()`` / ``fastser info``."""

from __future__ import annotations

import platform
import sys
from typing import Any, TextIO

import torch

from fastser.ops import _library
from fastser.ops._library import build_info, has_kernel, op_backend, registered_ops
from fastser.train.precision import cpu_bf16_flags, cpu_fast_bf16, describe_cpu_bf16
from fastser.version import __version__


def _forward_ops() -> list[str]:
    return [n.split("::", 1)[1] for n in registered_ops() if not n.endswith("_backward")]


def build_config() -> dict[str, Any]:
    """The installation as a dict: versions, the ops' backend (the compiled extension, or the
    reference fallback and why), compiled backends, per-op kernels, threads."""
    info = build_info()
    ops = _forward_ops()
    kernels = {op: [b for b in _library.KERNEL_KEYS if has_kernel(op, b)] for op in ops}
    compiled = _library.BACKEND == "compiled"
    backends = (["CPU", "CUDA"] if info.get("cuda") else ["CPU"]) if compiled else []
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if (
        torch.cuda.is_available()
    ) else []
    return {
        "fastser": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_built_against": info.get("torch_version"),
        "backend": _library.BACKEND,
        "extension_error": _library.LOAD_ERROR,
        "library": _library.library_path() if compiled else None,
        "backends": backends,
        "cuda_archs": info.get("cuda_archs", []) if compiled else [],
        "nvcc": info.get("nvcc") if compiled else None,
        "debug_build": bool(info.get("debug")) if compiled else None,
        "ops": kernels,
        "op_backends": {op: op_backend(op) for op in ops},
        "cuda_available": torch.cuda.is_available(),
        "gpus": gpus,
        "threads": torch.get_num_threads(),
        "parallel_backend": _parallel_backend(),
        "cpu_bf16": list(cpu_bf16_flags()),
        "cpu_amp_auto": "bf16" if cpu_fast_bf16() else "off",
        "cpu_float32_methods": _cpu_float32_methods(),
    }


def _cpu_float32_methods() -> list[str]:
    """The methods that keep float32 on the CPU under ``--amp auto`` (``Recipe.cpu_bf16``)."""
    from fastser.methods import METHODS, recipe_class

    return sorted(m for m in METHODS if not recipe_class(m).cpu_bf16)


def _parallel_backend() -> str:
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def show_config(file: TextIO | None = None) -> None:
    """Print :func:`build_config` as a short report."""
    out = file or sys.stdout
    cfg = build_config()
    compiled = cfg["backend"] == "compiled"
    built = (f"extension built against {cfg['torch_built_against']}"
             + (", debug build" if cfg["debug_build"] else "")) if compiled else "no extension"
    rows = [
        ("fastser", cfg["fastser"]),
        ("python", cfg["python"]),
        ("torch", f"{cfg['torch']} ({built})"),
        ("ops backend", "compiled extension" if compiled
         else f"reference fallback (PyTorch): {cfg['extension_error']}"),
        ("library", cfg["library"] or "none"),
        ("compiled backends", ", ".join(cfg["backends"]) or "none"),
    ]
    if "CUDA" in cfg["backends"]:
        rows.append(("CUDA archs", " ".join(cfg["cuda_archs"])))
        rows.append(("nvcc", cfg["nvcc"]))
    gpus = ", ".join(cfg["gpus"]) if cfg["gpus"] else "none visible"
    rows.append(("CUDA at run time", gpus))
    rows.append(("CPU threads", f"{cfg['threads']} ({cfg['parallel_backend']})"))
    rows.append(("CPU bf16", describe_cpu_bf16(cfg["cpu_float32_methods"])))
    width = max([len(k) for k, _ in rows] + [len(op) + 2 for op in cfg["ops"]])
    for key, value in rows:
        print(f"{key:<{width}}  {value}", file=out)
    if cfg["op_backends"]:
        print("ops:", file=out)
        for op, backend in cfg["op_backends"].items():
            print(f"  {op:<{width - 2}}  {backend}", file=out)
