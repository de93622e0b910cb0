"""pytest-benchmark of the MSTR training step: fused fractal attention op against the reference
op, the model without its attention op, and the vanilla Transformer (the cases of
``fastser bench --suite mstr``)."""

SUITE = "mstr"


def test_mstr(benchmark, bench_run):
    bench_run(benchmark)
