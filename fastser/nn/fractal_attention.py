"""MSTR's fractal self-attention as a module: Q/K/V projections, the fused fractal attention op,
and the output projection W_O."""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

import fastser.ops  # noqa: F401  (registers torch.ops.fastser.fractal_attention)
from fastser.ops.reference import fractal_attention_reference

IMPLEMENTATIONS = ("fused", "reference")


class FractalAttention(nn.Module):
    """Fractal multi-head self-attention (Li et al., MSTR).

    x: (B, T, embed_dim), lengths: int64 (B,) or None -> (B, T, embed_dim).  One linear layer
    projects x to q, k, v (each (B, T, num_heads, embed_dim // num_heads), read in place by the
    op); :func:`fastser.ops.fractal_attention` mixes ``levels`` scales of windows of ``p``
    frames; W_O projects the result.  Frames past a length take no part in the attention; their
    output rows are W_O's bias.

    ``implementation="reference"`` runs the reference op
    (:func:`fastser.ops.reference.fractal_attention_reference`) instead of the fused kernels
    (for tests and benchmarks), with the same parameters.  ``use_reference=True`` is the old
    spelling of ``implementation="reference"`` (deprecated).  Both paths are
    TorchScript-scriptable; the fused one needs fastser's library loaded where the scripted
    module runs.
    """

    def __init__(self, embed_dim: int, num_heads: int, p: int = 3, levels: int = 4,
                 bias: bool = True, *, implementation: str = "fused",
                 use_reference: Optional[bool] = None) -> None:
        super().__init__()
        if use_reference is not None:
            warnings.warn("FractalAttention(use_reference=...) is deprecated; use "
                          "implementation=\"reference\" or \"fused\"", DeprecationWarning,
                          stacklevel=2)
            implementation = "reference" if use_reference else "fused"
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"FractalAttention: implementation must be one of "
                             f"{', '.join(IMPLEMENTATIONS)}, got {implementation!r}")
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(f"FractalAttention: embed_dim ({embed_dim}) must be a positive "
                             f"multiple of num_heads ({num_heads})")
        if p < 2:
            raise ValueError(f"FractalAttention: p must be >= 2, got {p}")
        if levels < 1:
            raise ValueError(f"FractalAttention: levels must be >= 1, got {levels}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.p = p
        self.levels = levels
        self.implementation = implementation
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).unbind(2)
        if self.implementation == "reference":
            y = fractal_attention_reference(q, k, v, lengths, self.p, self.levels, None)
        else:
            y = torch.ops.fastser.fractal_attention(q, k, v, lengths, self.p, self.levels, None)
        return self.out_proj(y.reshape(B, T, self.embed_dim))

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, p={self.p}, "
                f"levels={self.levels}, implementation={self.implementation}")
