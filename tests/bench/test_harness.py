"""The benchmark harness measures what it says (no timing assertions: only structure)."""

import torch

from fastser.bench.cases import BenchCase
from fastser.bench.measure import make_runner, measure, peak_memory_bytes
from fastser.bench.report import format_table

CPU = torch.device("cpu")


def test_cpu_peak_memory_counts_live_allocations():
    def run():
        a = torch.ones(1 << 20)  # 4 MiB
        b = torch.ones(1 << 20)  # 4 MiB, both alive
        del a, b
        c = torch.ones(1 << 19)  # 2 MiB after both were freed
        del c

    peak = peak_memory_bytes(run, CPU)
    assert 8 * 2**20 <= peak < 10 * 2**20


def _case():
    def make_inputs():
        return (torch.randn(64, 32, requires_grad=True),)

    return BenchCase(
        suite="toy", size="64x32", make_inputs=make_inputs, device=CPU,
        impls={"fused": lambda x: torch.tanh(x), "reference": lambda x: 1 - 2 / (torch.exp(2 * x) + 1)},
    )


def test_forward_backward_runner_backpropagates_and_frees_grads():
    case = _case()
    run = make_runner(case, "reference", backward=True)
    run()  # no error, and leaves hold no gradient afterwards
    run()


def test_measure_and_table():
    case = _case()
    results = [measure(case, impl, min_time=0.01, warmup=1) for impl in case.impls]
    for m in results:
        assert m.forward_s > 0 and m.forward_backward_s > 0 and m.peak_bytes > 0
    table = format_table([(case, results)])
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["size", "impl"]
    assert lines[2].startswith("64x32") and "fused" in lines[2]
    assert "reference" in lines[3] and lines[3].count("x") >= 2


def test_bandwidth_at_least_traffic():
    from fastser.bench.fractal_attention import least_traffic_bytes
    from fastser.bench.measure import Measurement
    from fastser.bench.report import bandwidth, format_bandwidth

    assert least_traffic_bytes(1, 2, 1, 4, torch.float32) == {"forward": 4 * 32,
                                                               "forward_backward": 11 * 32}
    case = _case()
    results = [Measurement("fused", 1.0, 2.0, 0), Measurement("traffic", 0.5, None, 0)]
    assert bandwidth(case, results) == {}  # no bytes meta: no figure
    case.meta["bytes"] = {"forward": 2e9, "forward_backward": 4e9}
    rates = bandwidth(case, results)
    assert rates == {"fused": {"forward": 2.0, "forward_backward": 2.0},
                     "traffic": {"forward": 4.0}}
    line = format_bandwidth(case, rates)
    assert "forward 2.0 GB/s" in line and "50% of the traffic bound (4.0 GB/s)" in line
