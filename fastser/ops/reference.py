"""Naive eager PyTorch versions of every fastser op.

They follow ARCHITECTURE.md section 3 literally, written as the straightforward vectorised
code a competent researcher would write.  They are the oracle of the op tests and the
baseline of the benchmarks, so they favour clarity over speed and never call a fastser kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# --- head_k_pooling_loss (3.3) ----------------------------------------------------------------

def _num_selected(n: int, k: float) -> int:
    return min(n, max(1, math.ceil(k * n - 1e-6)))


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def head_k_pooling_loss_reference(logits: torch.Tensor, lengths: torch.Tensor,
                                  labels: torch.Tensor, k: float = 0.7,
                                  neutral_class: int | None = None, negative_weight: float = 1.0,
                                  reduction: str = "mean") -> torch.Tensor:
    """Vectorised head-k-pooling loss: pad the packed (S, C) logits to (B, Nmax, C), rank each
    utterance's segments by the label-class logit with a stable descending sort (ties: lower
    index first; NaN first, as torch.sort does), mask, and average BCE terms."""
    batch, classes = lengths.numel(), logits.shape[1]
    n_max = int(lengths.max())
    valid = torch.arange(n_max, device=logits.device)[None, :] < lengths[:, None]  # (B, Nmax)
    padded = logits.new_zeros(batch, n_max, classes)
    padded[valid] = logits  # (B, Nmax, C); pad_sequence's backward is quadratic in B
    top = torch.ceil(lengths.double() * k - 1e-6).long().clamp(min=1)
    top = torch.minimum(top, lengths)                                                 # K, (B,)

    score = padded.gather(2, labels[:, None, None].expand(batch, n_max, 1)).squeeze(2)
    order = torch.sort(score.masked_fill(~valid, -math.inf), dim=1, descending=True,
                       stable=True).indices
    positions = torch.arange(n_max, device=logits.device).expand(batch, n_max)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    selected = valid & (rank < top[:, None])                                          # (B, Nmax)
    unselected = valid & ~selected

    class_ids = torch.arange(classes, device=logits.device)
    target = (class_ids[None, :] == labels[:, None]).to(logits.dtype)                 # (B, C)
    eligible = class_ids[None, :] != labels[:, None]
    if neutral_class is not None:
        eligible &= (class_ids[None, :] != neutral_class) | (labels[:, None] == neutral_class)

    positive_mask = selected[:, :, None].expand(-1, -1, classes)
    negative_mask = unselected[:, :, None] & eligible[:, None, :]
    used = positive_mask | negative_mask
    # Zero the unused logits before the BCE, so that a NaN there cannot reach the gradient.
    safe = torch.where(used, padded, torch.zeros_like(padded))
    bce = F.binary_cross_entropy_with_logits(safe, target[:, None, :].expand_as(safe),
                                             reduction="none")
    zero = torch.zeros_like(bce)
    positive = torch.where(positive_mask, bce, zero).sum((1, 2)) / (top * classes)
    negative_count = (lengths - top) * eligible.sum(1)
    negative = torch.where(negative_mask, bce, zero).sum((1, 2)) / negative_count.clamp(min=1)
    return _reduce(positive + negative_weight * negative, reduction)


def head_k_pooling_loss_loop(logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                             k: float = 0.7, neutral_class: int | None = None,
                             negative_weight: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Head-k-pooling loss as the per-utterance Python loop users write."""
    losses = []
    for z, label in zip(logits.split(lengths.tolist()), labels.tolist()):
        n, classes = z.shape
        top = _num_selected(n, k)
        order = torch.sort(z[:, label], descending=True, stable=True).indices
        chosen, rest = order[:top], order[top:]
        target = torch.zeros(classes, dtype=z.dtype, device=z.device)
        target[label] = 1
        loss = F.binary_cross_entropy_with_logits(z[chosen], target.expand(top, classes))
        negatives = [c for c in range(classes) if c != label and (
            neutral_class is None or label == neutral_class or c != neutral_class)]
        if len(rest) > 0 and negatives:
            rest_logits = z[rest][:, negatives]
            zeros = torch.zeros_like(rest_logits)
            negative = F.binary_cross_entropy_with_logits(rest_logits, zeros)
            loss = loss + negative_weight * negative
        losses.append(loss)
    return _reduce(torch.stack(losses), reduction)
