"""Losses of dimensional emotion (affect) regression: per-dimension CCC, MAE or MSE over a
batch, computed in at least float32 (float64 stays float64)."""

from __future__ import annotations

import torch
from torch import Tensor

AFFECT_LOSSES = ("ccc", "mae", "mse")
#: Keeps 1 - CCC finite for a batch whose true and predicted values are one equal constant.
CCC_EPS = 1e-8


def concordance_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 - CCC of each column of pred and target (N, K) -> (K,), population moments (the
    metric of :func:`fastser.train.metrics.concordance_cc`)."""
    pred, target = _accurate(pred), _accurate(target)
    pred_mean, target_mean = pred.mean(0), target.mean(0)
    covariance = ((pred - pred_mean) * (target - target_mean)).mean(0)
    denominator = (pred.var(0, unbiased=False) + target.var(0, unbiased=False)
                   + (pred_mean - target_mean) ** 2)
    return 1 - 2 * covariance / (denominator + CCC_EPS)


def affect_loss(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """The ``kind`` loss ("ccc", "mae" or "mse") of each affect dimension of pred and target
    (N, K) -> (K,)."""
    if kind not in AFFECT_LOSSES:
        raise ValueError(f"affect loss must be one of {AFFECT_LOSSES}, got {kind!r}")
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"affect_loss: pred and target must be (N, K) alike, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if kind == "ccc":
        return concordance_loss(pred, target)
    difference = _accurate(pred) - _accurate(target)
    return difference.abs().mean(0) if kind == "mae" else (difference ** 2).mean(0)


def _accurate(values: Tensor) -> Tensor:
    return values.to(torch.promote_types(values.dtype, torch.float32))
