"""Benchmarks of fused ops and models against their straightforward PyTorch versions.

Each suite (one module per op here, one per method in the method's folder, listed by
:func:`fastser.bench.cases.suites`) builds :class:`~fastser.bench.cases.BenchCase` objects;
``fastser bench`` runs them into a table and the pytest-benchmark files under bench/ run the
same cases side by side.
"""

from fastser.bench.cases import BenchCase, load_suite, suites
from fastser.bench.measure import Measurement, measure, peak_memory_bytes, time_call

__all__ = [
    "BenchCase",
    "Measurement",
    "load_suite",
    "measure",
    "peak_memory_bytes",
    "suites",
    "time_call",
]
