"""pytest-benchmark: one training step (forward, backward, AdamW) of every method at its
default (paper) settings on 8 synthetic utterances, float32 eager against bf16 autocast
(``amp="bf16"``, what ``--amp auto`` picks on CPUs with AMX-BF16 or AVX512-BF16), side by
side in one group per method:

    pytest bench/test_amp.py --benchmark-only [--bench-device cuda]
"""

from __future__ import annotations

import pytest
import torch

from fastser.bench.training_step import step_runner
from fastser.methods import METHODS, make_recipe

BATCH = 8


@pytest.fixture(scope="module")
def utterances():
    from fastser.data.synthetic import SyntheticConfig, load_synthetic

    return list(load_synthetic(SyntheticConfig(utterances=16, speakers=4)))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_training_step(benchmark, request, utterances, method, amp):
    device = torch.device(request.config.getoption("--bench-device"))
    recipe = make_recipe(method, sorted({u.label for u in utterances}))
    step = step_runner(recipe, recipe.featurize(utterances), BATCH, device=device, amp=amp)
    benchmark.group = f"training step {method} (B={BATCH})"
    step()  # warm-up (oneDNN primitive creation)
    benchmark.pedantic(step, rounds=3, iterations=1)
