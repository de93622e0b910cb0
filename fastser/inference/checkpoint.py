"""A trained model back from its checkpoint: the method's recipe (settings, labels, what it
learnt from the training set) and the model with its weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastser.checkpoint import load_checkpoint
from fastser.errors import CheckpointError, UserError
from fastser.methods import recipe_class
from fastser.train.recipe import Recipe


@dataclass
class TrainedModel:
    """A recipe with its trained model, as a checkpoint describes them."""

    recipe: Recipe
    model: nn.Module
    checkpoint: dict[str, Any]


def load_trained(path: str | Path, *, method: str | None = None,
                 device: str | torch.device = "cpu", window: float | None = None,
                 hop: float | None = None) -> TrainedModel:
    """Rebuild recipe and model (in eval mode, on ``device``) from a checkpoint; ``method``:
    the method it must hold; ``window``/``hop``: the segment length and hop (seconds) a
    segment-level method predicts with (None: as trained; SettingsError for other methods
    or values the method refuses)."""
    payload = load_checkpoint(path, recipe=method, map_location=device)
    cls = recipe_class(payload["recipe"])
    try:
        recipe = cls.from_state(payload["recipe_state"])
    except (KeyError, TypeError, UserError) as error:
        raise CheckpointError(f"checkpoint {path}: its {payload.get('recipe')} recipe state is "
                              f"incomplete or invalid ({error})") from error
    overrides = cls.segment_overrides(window, hop)
    if overrides:
        recipe = cls.from_state(payload["recipe_state"], **overrides)
    model = recipe.build_model()
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path}: its weights do not fit a {payload['recipe']} "
                              f"model built from its own settings: {error}") from error
    return TrainedModel(recipe, model.to(device).eval(), payload)
