"""pytest-benchmark of the fused fractal attention op against its reference versions (the cases of
``fastser bench --suite fractal_attention``)."""

SUITE = "fractal_attention"


def test_fractal_attention(benchmark, bench_run):
    bench_run(benchmark)
