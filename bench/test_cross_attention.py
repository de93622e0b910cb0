"""pytest-benchmark: fused cross attention against its reference versions (same cases as
``fastser bench --suite cross_attention``)."""

SUITE = "cross_attention"


def test_cross_attention(benchmark, bench_run):
    bench_run(benchmark)
