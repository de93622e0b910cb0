"""What a benchmark is: a size, fresh inputs, and implementations to compare."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from fastser.methods import method_packages

# op suite name -> module defining ``cases(device, dtype, quick) -> list[BenchCase]``.
OP_SUITES: dict[str, str] = {
    "cross_attention": "fastser.bench.cross_attention",
    "head_k_pooling_loss": "fastser.bench.head_k_pooling_loss",
    "fractal_attention": "fastser.bench.fractal_attention",
}


def suites() -> dict[str, str]:
    """Every suite: one per op (:data:`OP_SUITES`) and one per method folder of
    fastser.methods with a ``bench`` module (named for the folder)."""
    found = dict(OP_SUITES)
    for package in method_packages():
        if package.startswith("fastser.methods.") and importlib.util.find_spec(f"{package}.bench"):
            found[package.rsplit(".", 1)[1]] = f"{package}.bench"
    return found


@dataclass
class BenchCase:
    """One benchmarked size of one suite.

    ``impls`` maps an implementation name to a callable taking the inputs made by
    ``make_inputs``; the first entry is the fused one, the others are baselines ("reference",
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
    known_suites = suites()
    if name not in known_suites:
        known = ", ".join(sorted(known_suites)) or "none"
        raise ValueError(f"unknown benchmark suite {name!r}; known suites: {known}")
    module = importlib.import_module(known_suites[name])
    return module.cases(device=device, dtype=dtype, quick=quick)
