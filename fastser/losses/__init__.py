"""Loss modules built on fastser's fused ops, and the losses of affect regression."""

from fastser.losses.affect import AFFECT_LOSSES, affect_loss, concordance_loss
from fastser.losses.head_k_pooling import HeadKPoolingLoss

__all__ = ["AFFECT_LOSSES", "HeadKPoolingLoss", "affect_loss", "concordance_loss"]
