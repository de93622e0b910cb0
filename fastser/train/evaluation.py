"""Evaluation of a trained model on a list of featurised utterances."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from fastser.train import metrics
from fastser.train.recipe import Predictions, Recipe, move_to


def concat_predictions(parts: Sequence[Predictions]) -> Predictions:
    """One Predictions for the batches ``parts``, on the CPU in float32."""
    def joined(name: str) -> torch.Tensor | None:
        values = [getattr(p, name) for p in parts]
        if any(v is None for v in values):
            return None
        return torch.cat([v.float().cpu() if v.is_floating_point() else v.cpu()
                          for v in values])

    probs = joined("probs")
    segments = (joined("segment_probs"), joined("segment_counts"))
    if segments[0] is None or segments[1] is None:
        segments = (None, None)
    return Predictions(probs, *segments, affect=joined("affect"))


def predict_items(recipe: Recipe, model: nn.Module, items: Sequence[Any], *,
                  batch_size: int = 32) -> tuple[Predictions, torch.Tensor, torch.Tensor | None]:
    """Predictions of ``model`` (in eval mode, without gradients; adapted to ``items`` by
    the recipe's :meth:`~fastser.train.recipe.Recipe.adapt` first), the labels (B,) and, for
    models with affect targets, the true affect values (B, K) (NaN where unknown)."""
    if len(items) == 0:
        raise ValueError(f"{recipe.name}: no utterances to predict")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts, labels, affect = [], [], []
    with torch.no_grad():
        predictor = recipe.adapt(model, items)
        for start in range(0, len(items), batch_size):
            batch = move_to(recipe.collate(items[start:start + batch_size]), device)
            parts.append(recipe.predict(predictor, batch))
            labels.append(batch["labels"].cpu())
            if recipe.affect_targets:
                affect.append(batch["affect"].float().cpu())
    model.train(was_training)
    return concat_predictions(parts), torch.cat(labels), torch.cat(affect) if affect else None


def mean_loss(recipe: Recipe, model: nn.Module, items: Sequence[Any], *,
              batch_size: int = 32) -> float:
    """The recipe's loss of ``model`` (in eval mode, without gradients) over ``items``, the
    mean over utterances (each batch's mean weighted by its size, so independent of
    ``batch_size`` up to rounding): a validation loss, lower is better."""
    if len(items) == 0:
        raise ValueError(f"{recipe.name}: no utterances to compute a loss on")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch = move_to(recipe.collate(chunk), device)
            total += float(recipe.loss(model, batch)) * len(chunk)
    model.train(was_training)
    return total / len(items)


def score(recipe: Recipe, preds: Predictions, labels: torch.Tensor,
          affect: torch.Tensor | None = None) -> dict[str, Any]:
    """For models with emotion classes: WA, UA, micro/macro/weighted F1, the confusion matrix
    and, for segment models, pure accuracy (neutral = the class named "neutral", when there is
    one). For models with affect targets: CCC, Pearson's r and MAE of each dimension against
    the true values ``affect`` (B, K), and their mean CCC (``ccc``)."""
    result: dict[str, Any] = {}
    if recipe.predicts_emotion:
        predicted = preds.probs.argmax(dim=1)
        result.update(metrics.classification_metrics(labels, predicted, recipe.num_classes))
        if preds.segment_probs is not None:
            neutral = (recipe.label_names.index("neutral") if "neutral" in recipe.label_names
                       else None)
            result["pure_accuracy"] = metrics.pure_accuracy(
                preds.segment_probs.argmax(dim=1), preds.segment_counts, labels, neutral)
        result["confusion"] = metrics.confusion_matrix(labels, predicted,
                                                       recipe.num_classes).tolist()
    if recipe.affect_targets:
        result.update(metrics.affect_metrics(affect, preds.affect, recipe.affect_targets))
    return result


def evaluate(recipe: Recipe, model: nn.Module, items: Sequence[Any], *,
             batch_size: int = 32) -> dict[str, Any]:
    """The metrics of :func:`score` for ``model`` on ``items``."""
    return score(recipe, *predict_items(recipe, model, items, batch_size=batch_size))
