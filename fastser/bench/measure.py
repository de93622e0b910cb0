"""Timing and peak memory of one implementation, forward or forward+backward."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from fastser.bench.cases import BenchCase


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    raise TypeError(f"a benchmarked implementation returned {type(out).__name__}, not tensors")


def _leaves(inputs: tuple[Any, ...]) -> list[torch.Tensor]:
    return [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]


def make_runner(case: BenchCase, impl: str, backward: bool) -> Callable[[], None]:
    """A zero-argument callable running ``impl`` once on fixed inputs (and fixed output
    gradients when ``backward``)."""
    fn = case.impls[impl]
    inputs = case.make_inputs()
    if not backward:

        def forward() -> None:
            with torch.no_grad():
                fn(*inputs)

        return forward

    outputs = _tensors(fn(*inputs))
    grads = [torch.randn_like(o) if o.dim() > 0 else torch.ones_like(o) for o in outputs]
    leaves = _leaves(inputs)

    def forward_backward() -> None:
        torch.autograd.backward(_tensors(fn(*inputs)), grads)
        for leaf in leaves:  # freed here, so that the peak of the next run counts them
            leaf.grad = None

    return forward_backward


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(run: Callable[[], None], device: torch.device, *, warmup: int = 2,
              min_time: float = 0.3, max_repeat: int = 50) -> float:
    """Median wall time of ``run`` in seconds (CUDA: synchronised around each call)."""
    for _ in range(warmup):
        run()
    _sync(device)
    samples: list[float] = []
    total = 0.0
    while len(samples) < 3 or (total < min_time and len(samples) < max_repeat):
        start = time.perf_counter()
        run()
        _sync(device)
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        total += elapsed
    return statistics.median(samples)


def peak_memory_bytes(run: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated by ``run`` above what was allocated before it.

    CUDA: the caching allocator's peak statistic.  CPU: the running sum of the profiler's
    allocation and free events (every ATen CPU allocation is recorded)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        if event.device_type() == torch._C._autograd.DeviceType.CPU:
            current += event.nbytes()
            peak = max(peak, current)
    return peak


@dataclass
class Measurement:
    """Median seconds and peak bytes of one implementation of one case."""

    impl: str
    forward_s: float
    forward_backward_s: float | None
    peak_bytes: int


def measure(case: BenchCase, impl: str, **timing: Any) -> Measurement:
    """Forward and (when the case and implementation have one) forward+backward timings, and
    the peak memory of the heavier of the two."""
    forward = make_runner(case, impl, backward=False)
    fwd_s = time_call(forward, case.device, **timing)
    with_backward = case.backward and impl not in case.forward_only
    fwd_bwd_s = None
    peak_run = forward
    if with_backward:
        peak_run = make_runner(case, impl, backward=True)
        fwd_bwd_s = time_call(peak_run, case.device, **timing)
    return Measurement(impl, fwd_s, fwd_bwd_s, peak_memory_bytes(peak_run, case.device))
