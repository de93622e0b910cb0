"""pytest-benchmark: one MMTL outer step over 8 speakers, batched with torch.func against the
sequential loop (same cases as ``fastser bench --suite mmtl``)."""

SUITE = "mmtl"


def test_mmtl(benchmark, bench_run):
    bench_run(benchmark)
