"""What a benchmark is: a size, fresh inputs, and implementations to compare."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from fastser.methods import method_packages

# suite name -> module defining ``cases(device, dtype, quick) -> list[BenchCase]``: one per op
# here, and one per method folder (its ``bench`` module).
SUITES: dict[str, str] = {
    "cross_attention": "fastser.bench.cross_attention",
    "head_k_pooling_loss": "fastser.bench.head_k_pooling_loss",
    "fractal_attention": "fastser.bench.fractal_attention",
    **{package.rsplit(".", 1)[1]: f"{package}.bench" for package in method_packages()},
}


@dataclass
class BenchCase:
    """One benchmarked size of one suite.

    ``impls`` maps an implementation name to a callable taking the inputs made by
    ``make_inputs``; the first entry is the fused one, the others are baselines ("naive",
    "loop", "sdpa", "compiled", ...).  A callable returns a tensor, a tuple of tensors or a
    scalar loss; forward+backward back-propagates fixed random gradients through all of them.
    Implementations named in ``forward_only`` are timed in the forward pass alone.
    """

    suite: str
    size: str
    make_inputs: Callable[[], tuple[Any, ...]]
    impls: dict[str, Callable[..., Any]]
    device: torch.device
    backward: bool = True
    forward_only: tuple[str, ...] = ()
    note: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def fused_name(self) -> str:
        return next(iter(self.impls))


def load_suite(name: str, device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    """The cases of suite ``name`` for ``device`` and ``dtype`` (``quick``: tiny sizes)."""
    if name not in SUITES:
        known = ", ".join(sorted(SUITES)) or "none"
        raise ValueError(f"unknown benchmark suite {name!r}; known suites: {known}")
    module = importlib.import_module(SUITES[name])
    return module.cases(device=device, dtype=dtype, quick=quick)
