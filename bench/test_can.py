"""pytest-benchmark: the CAN training step with the fused cross attention op against the
reference op (same cases as ``fastser bench --suite can``)."""

SUITE = "can"


def test_can(benchmark, bench_run):
    bench_run(benchmark)
