"""Evaluation of a trained model on a list of featurised utterances."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from fastser.train import metrics
from fastser.train.recipe import Predictions, Recipe, move_to


def concat_predictions(parts: Sequence[Predictions]) -> Predictions:
    """One Predictions for the batches ``parts``, on the CPU in float32."""
    probs = torch.cat([p.probs.float().cpu() for p in parts])
    if any(p.segment_probs is None for p in parts):
        return Predictions(probs)
    return Predictions(probs, torch.cat([p.segment_probs.float().cpu() for p in parts]),
                       torch.cat([p.segment_counts.cpu() for p in parts]))


def predict_items(recipe: Recipe, model: nn.Module, items: Sequence[Any], *,
                  batch_size: int = 32) -> tuple[Predictions, torch.Tensor]:
    """Predictions of ``model`` (in eval mode, without gradients; adapted to ``items`` by
    the recipe's :meth:`~fastser.train.recipe.Recipe.adapt` first) and the labels (B,)."""
    if len(items) == 0:
        raise ValueError(f"{recipe.name}: no utterances to predict")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts, labels = [], []
    with torch.no_grad():
        predictor = recipe.adapt(model, items)
        for start in range(0, len(items), batch_size):
            batch = move_to(recipe.collate(items[start:start + batch_size]), device)
            parts.append(recipe.predict(predictor, batch))
            labels.append(batch["labels"].cpu())
    model.train(was_training)
    return concat_predictions(parts), torch.cat(labels)


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


def score(recipe: Recipe, preds: Predictions, labels: torch.Tensor) -> dict[str, Any]:
    """WA, UA, micro/macro/weighted F1, the confusion matrix and, for segment models, pure
    accuracy (neutral = the class named "neutral", when there is one)."""
    predicted = preds.probs.argmax(dim=1)
    result: dict[str, Any] = metrics.classification_metrics(labels, predicted, recipe.num_classes)
    if preds.segment_probs is not None:
        neutral = recipe.label_names.index("neutral") if "neutral" in recipe.label_names else None
        result["pure_accuracy"] = metrics.pure_accuracy(
            preds.segment_probs.argmax(dim=1), preds.segment_counts, labels, neutral)
    result["confusion"] = metrics.confusion_matrix(labels, predicted,
                                                   recipe.num_classes).tolist()
    return result


def evaluate(recipe: Recipe, model: nn.Module, items: Sequence[Any], *,
             batch_size: int = 32) -> dict[str, Any]:
    """The metrics of :func:`score` for ``model`` on ``items``."""
    preds, labels = predict_items(recipe, model, items, batch_size=batch_size)
    return score(recipe, preds, labels)
