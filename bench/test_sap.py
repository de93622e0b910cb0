"""pytest-benchmark: SAP pooling (packed vs masked vs loop) and training steps on cached vs
recomputed SSL features (same cases as ``fastser bench --suite sap``)."""

SUITE = "sap"


def test_sap(benchmark, bench_run):
    bench_run(benchmark)
