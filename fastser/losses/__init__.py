"""Loss modules built on fastser's fused ops."""

from fastser.losses.head_k_pooling import HeadKPoolingLoss

__all__ = ["HeadKPoolingLoss"]
