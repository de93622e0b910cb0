"""pytest-benchmark over the same cases as ``fastser bench``.

A bench file names its suite (``SUITE = "fractal_attention"``) and has one test taking
``benchmark`` and ``bench_run``; every case x implementation x mode becomes one benchmark,
grouped so that fused and reference sit side by side:

    pytest bench/ --benchmark-only [--bench-device cuda] [--bench-dtype bfloat16] [--bench-quick]
"""

from __future__ import annotations

import torch

from fastser.bench import load_suite
from fastser.bench.measure import make_runner

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pytest_addoption(parser):
    group = parser.getgroup("fastser bench")
    group.addoption("--bench-device", default="cpu", help="cpu or cuda")
    group.addoption("--bench-dtype", default="float32", choices=sorted(DTYPES))
    group.addoption("--bench-quick", action="store_true", help="tiny sizes")


class BenchRun:
    def __init__(self, case, impl: str, mode: str):
        self.case, self.impl, self.mode = case, impl, mode

    @property
    def id(self) -> str:
        return f"{self.case.size}-{self.mode}-{self.impl}".replace(" ", "_")

    def __call__(self, benchmark) -> None:
        benchmark.group = f"{self.case.suite} {self.case.size} {self.mode}"
        run = make_runner(self.case, self.impl, backward=self.mode == "fwd+bwd")
        if self.case.device.type == "cuda":
            inner = run

            def run() -> None:
                inner()
                torch.cuda.synchronize()

        benchmark(run)


def pytest_generate_tests(metafunc):
    if "bench_run" not in metafunc.fixturenames:
        return
    config = metafunc.config
    device = torch.device(config.getoption("--bench-device"))
    dtype = DTYPES[config.getoption("--bench-dtype")]
    runs = []
    if device.type == "cpu" or torch.cuda.is_available():
        for case in load_suite(metafunc.module.SUITE, device, dtype,
                               config.getoption("--bench-quick")):
            for impl in case.impls:
                runs.append(BenchRun(case, impl, "fwd"))
                if case.backward and impl not in case.forward_only:
                    runs.append(BenchRun(case, impl, "fwd+bwd"))
    metafunc.parametrize("bench_run", runs, ids=[r.id for r in runs])
