"""pytest-benchmark: a GLRF training step with the fused head-k-pooling loss vs the vectorised
reference loss and the Python loop."""

SUITE = "glrf"


def test_glrf(benchmark, bench_run):
    bench_run(benchmark)
