"""Which backend serves the ops, and queries about what is registered.

Importing this module registers ``torch.ops.fastser.*`` from one of two backends:

- ``compiled``: fastser's extension ``fastser._C`` (CPU kernels, and CUDA kernels when it was
  built with them); importing it runs its TORCH_LIBRARY block.
- ``reference``: when the extension is missing (installed without a compiler, or with
  ``FASTSER_BUILD_EXTENSION=0``), fails to load (e.g. built against another torch), or
  ``FASTSER_REFERENCE_OPS=1`` asks for it, the same ops are defined from Python with the same
  schemas (fastser/ops/schemas.inc, which the extension compiles in too) and served on the CPU
  and CUDA by the kernels of :mod:`fastser.ops.fallback`, built on the naive versions of
  :mod:`fastser.ops.reference`.  The op modules' fake kernels, autograd and FLOP formulas are
  registered on them unchanged.  One :class:`ReferenceOpsWarning` says so at import.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

NAMESPACE = "fastser"
SCHEMA_FILE = Path(__file__).with_name("schemas.inc")
REFERENCE_ENV = "FASTSER_REFERENCE_OPS"  # "1": serve the ops by the reference backend
KERNEL_KEYS = ("CPU", "CUDA")  # the dispatch keys the reference kernels are registered for


class ReferenceOpsWarning(UserWarning):
    """fastser's compiled extension is not loaded: the ops run their reference versions."""


def parse_schemas(text: str) -> list[str]:
    """The schemas of schemas.inc's raw string literal, parsed as csrc/registration.cpp does:
    '#' comments dropped, whitespace runs collapsed to one space, split at ';'."""
    try:
        body = text.split('R"schemas(', 1)[1].split(')schemas"', 1)[0]
    except IndexError:
        raise RuntimeError(f"{SCHEMA_FILE} holds no R\"schemas(...)schemas\" literal") from None
    *schemas, tail = "\n".join(line.split("#", 1)[0] for line in body.split("\n")).split(";")
    if tail.strip():
        raise RuntimeError(f"{SCHEMA_FILE} ends without ';' after {tail.strip()!r}")
    return [" ".join(schema.split()) for schema in schemas]


def schemas() -> list[str]:
    """Every op's schema, as fastser/ops/schemas.inc states it (name first)."""
    return parse_schemas(SCHEMA_FILE.read_text(encoding="utf-8"))


def build_info() -> dict[str, Any]:
    """What setup.py recorded about the extension in fastser/_build_info.py ({} when absent)."""
    try:
        from fastser._build_info import BUILD_INFO
    except ImportError:
        return {}
    return dict(BUILD_INFO)


def _why_not_loaded(error: BaseException) -> str:
    """A one-line reason why ``fastser._C`` did not load."""
    info = build_info()
    if info.get("extension") is False:
        return f"the extension was not built: {info.get('reason', 'no reason recorded')}"
    if isinstance(error, ModuleNotFoundError) and error.name == "fastser._C":
        return "fastser._C is not installed (no compiled extension next to the package)"
    built = info.get("torch_version")
    against = (f" (built against torch {built}, running torch {torch.__version__}: rebuild "
               "it)") if built and built != torch.__version__ else ""
    return f"fastser._C failed to load{against}: {type(error).__name__}: {error}"


def _load_extension() -> tuple[ModuleType | None, str | None]:
    """(the extension module, None), or (None, why the reference backend serves the ops)."""
    asked = os.environ.get(REFERENCE_ENV, "")
    if asked not in ("", "0"):
        return None, f"{REFERENCE_ENV}={asked} asks for the reference ops"
    try:
        from fastser import _C
    except (ImportError, OSError) as error:  # OSError: a shared library it needs is missing
        return None, _why_not_loaded(error)
    return _C, None


def registered_ops() -> list[str]:
    """Qualified names (``fastser::name``) of every op in the fastser namespace."""
    prefix = NAMESPACE + "::"
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith(prefix))


_C, LOAD_ERROR = _load_extension()
BACKEND = "compiled" if _C is not None else "reference"
_REFERENCE_LIBRARY: torch.library.Library | None = None
if _C is None:
    if registered_ops():
        raise RuntimeError(
            f"fastser's ops are already registered in this process (by torch.ops.load_library "
            f"of its shared library?) but the package cannot use them: {LOAD_ERROR}")
    _REFERENCE_LIBRARY = torch.library.Library(NAMESPACE, "DEF")
    for _schema in schemas():
        _REFERENCE_LIBRARY.define(_schema)
    _remedy = (f"unset {REFERENCE_ENV} to use the compiled kernels" if LOAD_ERROR.startswith(
        REFERENCE_ENV) else "build the extension (`pip install --no-build-isolation .` in the "
        "fastser source tree, with a C++ compiler) to get the fused kernels")
    warnings.warn(f"fastser: every op runs its reference PyTorch implementation (same results, "
                  f"slower) because {LOAD_ERROR}; {_remedy}.", ReferenceOpsWarning, stacklevel=2)


def register_reference_kernels(kernels: dict[str, object]) -> None:
    """Serve each op ``name`` of ``kernels`` by its function on the CPU and CUDA (the reference
    backend only; called once by fastser.ops after the op modules registered their fake
    kernels, autograd and FLOP formulas)."""
    assert _REFERENCE_LIBRARY is not None, "the compiled extension serves the ops"
    missing = {s.split("(", 1)[0] for s in schemas()} - set(kernels)
    assert not missing, f"no reference kernel for {sorted(missing)}"
    for name, fn in kernels.items():
        for key in KERNEL_KEYS:
            _REFERENCE_LIBRARY.impl(name, fn, key)


def library_path() -> str:
    """Path of the shared library: ``torch.ops.load_library(library_path())`` registers the
    ops in a process that does not import fastser (e.g. to run an exported TorchScript file).
    A RuntimeError when the reference backend serves the ops: there is no library then."""
    if _C is None:
        raise RuntimeError(
            f"fastser.ops.library_path: there is no compiled library to load ({LOAD_ERROR}); "
            "in this installation a process registers fastser's ops by `import fastser`")
    return _C.__file__


def has_kernel(op: str, backend: str) -> bool:
    """Whether ``fastser::op`` has a kernel for dispatch key ``backend`` ("CPU", "CUDA")."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", backend)


def op_backend(op: str) -> str:
    """What serves ``fastser::op``: the compiled kernels and their devices, or the reference."""
    if BACKEND == "reference":
        return "reference (PyTorch, fastser.ops.fallback)"
    devices = [key for key in KERNEL_KEYS if has_kernel(op, key)]
    return f"compiled ({', '.join(devices) or 'no kernels'})"
