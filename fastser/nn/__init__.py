"""nn.Modules built on fastser's ops."""

from fastser.nn.cross_attention import CrossAttention

__all__ = ["CrossAttention"]
