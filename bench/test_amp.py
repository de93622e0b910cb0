"""pytest-benchmark: one training step (forward, backward, AdamW) of every gradient-trained
method on 8 synthetic utterances, float32 eager against bf16 autocast (``amp="bf16"``, what
``--amp auto`` picks on CPUs with AMX-BF16 or AVX512-BF16 for all but GLRF and MMTL), at
its default settings and at fastser 0.1's (``Settings.defaults_0_1``: the paper sizes of
MSTR, the Transformer and the spectrogram family), side by side in one group per method and
settings:

    pytest bench/test_amp.py --benchmark-only [--bench-device cuda]
"""

from __future__ import annotations

import pytest
import torch

from fastser.bench.training_step import step_runner
from fastser.methods import METHODS, make_recipe, recipe_class

BATCH = 8


@pytest.fixture(scope="module")
def utterances():
    from fastser.data.synthetic import SyntheticConfig, load_synthetic

    return list(load_synthetic(SyntheticConfig(utterances=16, speakers=4)))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("settings", ["defaults", "0.1"])
@pytest.mark.parametrize("method", sorted(m for m in METHODS if recipe_class(m).gradient_trained))
def test_training_step(benchmark, request, utterances, method, settings, amp):
    device = torch.device(request.config.getoption("--bench-device"))
    values = recipe_class(method).Settings.defaults_0_1 if settings == "0.1" else {}
    recipe = make_recipe(method, sorted({u.label for u in utterances}), **values)
    step = step_runner(recipe, recipe.featurize(utterances), BATCH, device=device, amp=amp)
    benchmark.group = f"training step {method}, {settings} settings (B={BATCH})"
    step()  # warm-up (oneDNN primitive creation)
    benchmark.pedantic(step, rounds=3, iterations=1)
