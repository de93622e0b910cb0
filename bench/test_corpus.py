"""Synthetic corpus: generation time (nothing cached) and load time (cached).

    pytest bench/test_corpus.py --benchmark-only [--bench-quick]

The default corpus (480 utterances) is generated into a fresh cache folder every round;
``--bench-quick`` uses 40 utterances.
"""

from __future__ import annotations

import itertools

import pytest

from fastser.data.synthetic import SyntheticConfig, load_synthetic


@pytest.fixture
def config(request) -> SyntheticConfig:
    return SyntheticConfig(utterances=40 if request.config.getoption("--bench-quick") else 480)


def test_synthetic_generate_uncached(benchmark, config, tmp_path):
    fresh = (tmp_path / f"cache{i}" for i in itertools.count())
    benchmark.group = f"synthetic corpus, {config.utterances} utterances"
    benchmark.pedantic(lambda: load_synthetic(config, cache_dir=next(fresh)), rounds=3,
                       iterations=1)


def test_synthetic_load_cached(benchmark, config, tmp_path):
    load_synthetic(config, cache_dir=tmp_path)
    benchmark.group = f"synthetic corpus, {config.utterances} utterances"
    benchmark(load_synthetic, config, cache_dir=tmp_path)
