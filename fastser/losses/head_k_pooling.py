"""``HeadKPoolingLoss``: the head-k-pooling loss of GLRF as an ``nn.Module``."""

from typing import Optional

import torch
from torch import nn

from fastser.ops.head_k_pooling_loss import check_hyperparameters


class HeadKPoolingLoss(nn.Module):
    """Head-k-pooling loss (docs/ops.md) over the packed segments of B utterances.

    forward(logits (S, C), lengths (B,) int64, labels (B,) int64) -> scalar for reduction
    "mean"/"sum", (B,) for "none".  See :func:`fastser.ops.head_k_pooling_loss`.  Calls the op
    positionally, so the module can be scripted with TorchScript.
    """

    neutral_class: Optional[int]

    def __init__(self, k: float = 0.7, neutral_class: Optional[int] = None,
                 negative_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        check_hyperparameters(k, neutral_class, negative_weight, reduction)
        self.k = float(k)
        self.neutral_class = neutral_class
        self.negative_weight = float(negative_weight)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, lengths: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        compute_grad = logits.requires_grad and torch.is_grad_enabled()
        loss, _ = torch.ops.fastser.head_k_pooling_loss(
            logits, lengths, labels, self.k, self.neutral_class, self.negative_weight,
            self.reduction, compute_grad)
        return loss

    def extra_repr(self) -> str:
        return (f"k={self.k}, neutral_class={self.neutral_class}, "
                f"negative_weight={self.negative_weight}, reduction={self.reduction!r}")
