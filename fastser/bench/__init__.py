"""Benchmarks of fused ops and models against their naive PyTorch versions.

Each suite (one module per op or model, listed in :data:`fastser.bench.cases.SUITES`) builds
:class:`~fastser.bench.cases.BenchCase` objects; ``fastser bench`` runs them into a table and
the pytest-benchmark files under bench/ run the same cases side by side.
"""

from fastser.bench.cases import SUITES, BenchCase, load_suite
from fastser.bench.measure import Measurement, measure, peak_memory_bytes, time_call

__all__ = [
    "SUITES",
    "BenchCase",
    "Measurement",
    "load_suite",
    "measure",
    "peak_memory_bytes",
    "time_call",
]
