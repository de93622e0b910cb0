"""Loading of the compiled extension and queries about what it registered."""

from __future__ import annotations

import torch

try:
    from fastser import _C  # noqa: F401  (importing it registers torch.ops.fastser.*)
except ImportError as error:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "fastser's compiled extension (fastser._C) is missing or was built against another "
        f"torch (running torch {torch.__version__}). Rebuild it with "
        "`pip install --no-build-isolation .` in the fastser source tree. "
        f"Original error: {error}"
    ) from error

NAMESPACE = "fastser"


def library_path() -> str:
    """Path of the shared library: ``torch.ops.load_library(library_path())`` registers the
    ops in a process that does not import fastser (e.g. to run an exported TorchScript file)."""
    return _C.__file__


def registered_ops() -> list[str]:
    """Qualified names (``fastser::name``) of every op in the TORCH_LIBRARY block."""
    prefix = NAMESPACE + "::"
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith(prefix))


def has_kernel(op: str, backend: str) -> bool:
    """Whether ``fastser::op`` has a kernel for dispatch key ``backend`` ("CPU", "CUDA")."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", backend)
