"""Time of one training step (forward, backward, optimiser step) of a recipe's model on a
fixed batch: the fused path against the naive path (recipe config ``naive=True``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from fastser.bench.measure import time_call
from fastser.train.recipe import Recipe, move_to


def step_runner(recipe: Recipe, items: Sequence[Any], batch_size: int, *,
                device: torch.device = torch.device("cpu"), seed: int = 0):
    """A zero-argument callable running one training step of a fresh model of ``recipe`` on
    the first ``batch_size`` items."""
    torch.manual_seed(seed)
    recipe.fit_extra(items)
    model = recipe.build_model().to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = move_to(recipe.collate(list(items[:batch_size])), device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        recipe.loss(model, batch).backward()
        optimizer.step()

    return step


def naive_variant(recipe: Recipe) -> Recipe:
    """The same recipe (label set, config, fitted statistics) on the naive path."""
    state = recipe.state()
    return type(recipe).from_state({**state, "config": {**state["config"], "naive": True}})


def step_speedup(recipe: Recipe, items: Sequence[Any], batch_size: int, *,
                 device: torch.device = torch.device("cpu"), min_time: float = 0.5
                 ) -> dict[str, float]:
    """Median seconds of a training step, fused and naive, and their ratio."""
    fused = time_call(step_runner(recipe, items, batch_size, device=device), device,
                      min_time=min_time, max_repeat=20)
    naive = time_call(step_runner(naive_variant(recipe), items, batch_size, device=device),
                      device, min_time=min_time, max_repeat=20)
    return {"fused_s": fused, "naive_s": naive, "speedup": naive / fused}
