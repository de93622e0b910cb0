"""Checks on the values of integer tensors (lengths, counts, ids) that hold wherever a model
runs: eager mode and TorchScript raise ValueError with the message (the caller's own
branches); torch.compile and torch.export, which cannot branch on tensor values, get the
same bounds as run-time asserts of the traced graph."""

import torch
from torch import Tensor


def tracing() -> bool:
    """True while torch.compile or torch.export traces the caller (never in TorchScript)."""
    return not torch.jit.is_scripting() and torch.compiler.is_compiling()


@torch.jit.unused
def assert_range(values: Tensor, low: int, high: int, message: str) -> None:
    """Under tracing: a graph assert that every value lies in [low, high]."""
    torch._check(values.min().item() >= low, lambda: message)
    torch._check(values.max().item() <= high, lambda: message)


@torch.jit.unused
def assert_sum(values: Tensor, total: int, message: str) -> None:
    """Under tracing: a graph assert that the values sum to ``total``."""
    torch._check(values.sum().item() == total, lambda: message)
