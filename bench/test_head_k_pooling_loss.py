"""pytest-benchmark: fused head_k_pooling_loss vs the vectorised reference and the Python loop."""

SUITE = "head_k_pooling_loss"


def test_head_k_pooling_loss(benchmark, bench_run):
    bench_run(benchmark)
