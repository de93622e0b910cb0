"""Class balance, the one implementation every method uses: class weights for a weighted loss
and per-item weights for class-balanced sampling, both from the training labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from fastser.train.kit.settings import Settings, setting


def _counts(labels: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    labels = torch.as_tensor(labels, dtype=torch.int64).flatten()
    if labels.numel() == 0:
        raise ValueError("class balance: no labels to count")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"class balance: labels must lie in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return torch.bincount(labels, minlength=num_classes).double()


def class_weights(labels: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    """w_c = N / (C · n_c) for int labels (N,) in [0, C) -> float32 (C,); 0 for a class with
    no label (it is never a target). scikit-learn's ``class_weight="balanced"`` when every
    class occurs (it counts only the classes present)."""
    counts = _counts(labels, num_classes)
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)),
                          torch.zeros_like(counts))
    return weights.float()


def balanced_item_weights(labels: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    """Sampling weight 1 / n_c of every item (N,) float64: drawn with these weights, each
    class is equally likely."""
    labels = torch.as_tensor(labels, dtype=torch.int64).flatten()
    return 1.0 / _counts(labels, num_classes)[labels]


@dataclass(frozen=True, kw_only=True)
class ClassWeightSettings(Settings):
    """The class-balanced loss setting of a cross-entropy method."""

    class_weighted: bool = setting(False, "weight each class in the loss by N / (C · n_c) of "
                                   "the training labels (a class-balanced loss)")
