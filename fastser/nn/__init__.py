"""nn.Modules built on fastser's ops."""

from fastser.nn.cross_attention import CrossAttention
from fastser.nn.fractal_attention import FractalAttention

__all__ = ["CrossAttention", "FractalAttention"]
