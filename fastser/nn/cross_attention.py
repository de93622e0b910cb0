"""``CrossAttention``: learned-query audio-text cross attention with stop-gradient (the CAN
model's pooling), on the fused op ``fastser::cross_attention``."""

from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import torch
from torch import nn

import fastser.ops  # noqa: F401  (registers torch.ops.fastser.*)
from fastser.ops.reference import cross_attention_reference

#: The values of ``implementation``: the fused op, or the reference PyTorch version.
IMPLEMENTATIONS = ("fused", "reference")


class CrossAttention(nn.Module):
    """Multi-head attention pooling of aligned text and audio sequences by one learned query
    per head and modality; each modality's weights also pool the other modality, without
    gradient through them (docs/ops.md, cross_attention).

    forward(h_text, h_audio, lengths=None): h_text, h_audio (B, L, E) with E = num_heads ·
    head_dim, lengths int64 (B,) or None.  Returns (c_tt, c_ta, c_aa, c_at), each (B, E).
    ``implementation``: "fused" (default) runs the fused op, "reference" the straightforward
    PyTorch version of the same computation (for tests and benchmarks); the former
    ``use_reference=True/False`` still works, with a DeprecationWarning.
    ``stop_gradient=False`` drops the stop-gradient of the crossed contexts (CAN's
    "- stop-gradient" ablation); the fused op implements the stop-gradient, so without it the
    module runs the PyTorch formulation whatever ``implementation`` says.  Scriptable with
    TorchScript.
    """

    def __init__(self, num_heads: int, head_dim: int, *, scale: float = 1.0,
                 implementation: str = "fused", use_reference: Optional[bool] = None,
                 stop_gradient: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or head_dim < 1:
            raise ValueError(f"CrossAttention: num_heads and head_dim must be >= 1, got "
                             f"{num_heads} and {head_dim}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"CrossAttention: implementation must be one of "
                             f"{IMPLEMENTATIONS}, got {implementation!r}")
        if use_reference is not None:
            warnings.warn("CrossAttention(use_reference=...) is deprecated; pass "
                          "implementation=\"reference\" or \"fused\" (use_reference will be "
                          "removed in fastser 0.3)", DeprecationWarning, stacklevel=2)
            implied = "reference" if use_reference else "fused"
            if implementation != "fused" and implementation != implied:
                raise ValueError(f"CrossAttention: use_reference={use_reference} contradicts "
                                 f"implementation={implementation!r}; pass implementation only")
            implementation = implied
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = float(scale)
        self.implementation = implementation
        self.stop_gradient = bool(stop_gradient)
        self.q_text = nn.Parameter(torch.empty(num_heads, head_dim))
        self.q_audio = nn.Parameter(torch.empty(num_heads, head_dim))
        self.reset_parameters()

    @property
    def embed_dim(self) -> int:
        return self.num_heads * self.head_dim

    def reset_parameters(self) -> None:
        """Queries ~ N(0, 1/head_dim), so initial scores have unit variance for unit inputs."""
        for q in (self.q_text, self.q_audio):
            nn.init.normal_(q, std=1.0 / math.sqrt(self.head_dim))

    def extra_repr(self) -> str:
        return (f"num_heads={self.num_heads}, head_dim={self.head_dim}, scale={self.scale}, "
                f"implementation={self.implementation!r}, stop_gradient={self.stop_gradient}")

    def forward(self, h_text: torch.Tensor, h_audio: torch.Tensor,
                lengths: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        embed = self.num_heads * self.head_dim
        if h_text.dim() != 3 or h_text.shape[-1] != embed:
            raise ValueError(f"CrossAttention: h_text must be (B, L, {embed}) "
                             f"(B, L, num_heads * head_dim), got {list(h_text.shape)}")
        if h_audio.shape != h_text.shape:
            raise ValueError(f"CrossAttention: h_audio must have the shape of h_text "
                             f"{list(h_text.shape)}, got {list(h_audio.shape)}")
        batch, frames = h_text.shape[0], h_text.shape[1]
        text = h_text.reshape(batch, frames, self.num_heads, self.head_dim)
        audio = h_audio.reshape(batch, frames, self.num_heads, self.head_dim)
        if self.implementation == "reference" or not self.stop_gradient:
            c_tt, c_ta, c_aa, c_at = cross_attention_reference(
                text, audio, self.q_text, self.q_audio, lengths, self.scale, self.stop_gradient)
        else:
            c_tt, c_ta, c_aa, c_at, _ = torch.ops.fastser.cross_attention(
                text, audio, self.q_text, self.q_audio, lengths, self.scale)
        return (c_tt.reshape(batch, embed), c_ta.reshape(batch, embed),
                c_aa.reshape(batch, embed), c_at.reshape(batch, embed))
