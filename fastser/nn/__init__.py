"""nn.Modules built on fastser's ops."""

from fastser.nn.fractal_attention import FractalAttention

__all__ = ["FractalAttention"]
