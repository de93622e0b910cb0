"""Time of one training step (forward, backward, optimiser step) of a recipe's model on a
fixed batch: the fused path against the reference path (setting
``implementation="reference"``: the reference ops, or MMTL's sequential loop over speakers)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from fastser.bench.measure import time_call
from fastser.train.precision import autocast
from fastser.train.recipe import Recipe, move_to


def step_runner(recipe: Recipe, items: Sequence[Any], batch_size: int, *,
                device: torch.device = torch.device("cpu"), seed: int = 0, amp: str = "off"):
    """A zero-argument callable running one training step of a fresh model of ``recipe`` as
    the trainer would: on the first step of the recipe's own batches (``train_batches``, e.g.
    MMTL's per-speaker episodes) or else on the first ``batch_size`` items, with the recipe's
    own gradients (``step_gradients``, e.g. MMTL's outer step) or else the back-propagated
    loss; the forward pass under the trainer's autocast of ``amp``."""
    torch.manual_seed(seed)
    recipe.fit_extra(items)
    model = recipe.build_model().to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    own_batches = recipe.train_batches(items, batch_size, seed=seed, rank=0, world_size=1)
    if own_batches is None:
        batch = recipe.collate(list(items[:batch_size]))
    else:
        own_batches.set_epoch(0)
        batch = next(iter(own_batches)).batch
    batch = move_to(batch, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(amp, device):
            own = recipe.step_gradients(model, batch)
            loss = recipe.loss(model, batch) if own is None else None
        if own is None:
            loss.backward()
        else:
            for param, grad in zip(model.parameters(), own.gradients):
                param.grad = grad
        optimizer.step()

    return step


def reference_variant(recipe: Recipe) -> Recipe:
    """The same recipe (label set, settings, fitted statistics) on the reference path (its
    paths are this process's own, not a checkpoint's: they stay in use)."""
    state = recipe.state()
    return type(recipe).from_state(
        {**state, "settings": {**state["settings"], "implementation": "reference"}},
        stored_paths=True)


def step_speedup(recipe: Recipe, items: Sequence[Any], batch_size: int, *,
                 device: torch.device = torch.device("cpu"), min_time: float = 0.5
                 ) -> dict[str, float]:
    """Median seconds of a training step, fused and reference, and their ratio."""
    fused = time_call(step_runner(recipe, items, batch_size, device=device), device,
                      min_time=min_time, max_repeat=20)
    reference = time_call(step_runner(reference_variant(recipe), items, batch_size,
                                      device=device), device, min_time=min_time, max_repeat=20)
    return {"fused_s": fused, "reference_s": reference, "speedup": reference / fused}
