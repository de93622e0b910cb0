"""A trained model back from its checkpoint: the method's recipe (settings, labels, what it
learnt from the training set) and the model with its weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

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
                 hop: float | None = None, settings: Mapping[str, Any] | None = None,
                 stored_paths: bool = False) -> TrainedModel:
    """Rebuild recipe and model (in eval mode, on ``device``) from a checkpoint; ``method``:
    the method it must hold; ``window``/``hop``: the segment length and hop (seconds) a
    segment-level method predicts with (None: as trained; SettingsError for other methods
    or values the method refuses). ``settings``: the path settings the recipe may use (a
    checkpoint's stored paths are not used unless ``stored_paths``: see
    :meth:`Recipe.from_state`). A checkpoint whose weights hold NaN or infinity is refused."""
    payload = load_checkpoint(path, recipe=method, map_location=device)
    cls = recipe_class(payload["recipe"])
    cls.check_paths(settings)  # the user's mistakes stay theirs, not the checkpoint's
    try:
        recipe = cls.from_state(payload["recipe_state"], paths=settings,
                                stored_paths=stored_paths)
    except (KeyError, TypeError, UserError) as error:
        raise CheckpointError(f"checkpoint {path}: its {payload.get('recipe')} recipe state is "
                              f"incomplete or invalid ({error})") from error
    overrides = cls.segment_overrides(window, hop)
    if overrides:  # the user's values: their errors are SettingsErrors, not the checkpoint's
        recipe = cls.from_state(payload["recipe_state"], paths=settings,
                                stored_paths=stored_paths, **overrides)
    _check_finite(path, payload["model"])
    model = recipe.build_model()
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path}: its weights do not fit a {payload['recipe']} "
                              f"model built from its own settings: {error}") from error
    return TrainedModel(recipe, model.to(device).eval(), payload)


def _check_finite(path: str | Path, weights: Mapping[str, Any]) -> None:
    """CheckpointError naming the first tensor of ``weights`` that holds NaN or infinity."""
    for name, value in weights.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"checkpoint {path} holds non-finite weights ({bad} of "
                                  f"{value.numel()} values of {name} are NaN or infinite): it "
                                  "was saved from a diverged run and cannot score anything")
