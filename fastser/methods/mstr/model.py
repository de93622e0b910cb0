"""MSTR, the Multi-Scale Temporal Transformer (Li et al., "Multi-Scale Temporal Transformer
for Speech Emotion Recognition").

An MSTR block is the multi-scale temporal operator (frames averaged in groups of ``p``, level
after level, ``levels`` scales), fractal self-attention (softmax attention inside windows of
``p`` frames at every scale) and the scale mixer (GELU of each scale's result, repeated back
to the frames it stands for and summed): all three are one fused op,
:func:`fastser.ops.fractal_attention`, wrapped with its QKV projection and W_O in
:class:`fastser.nn.FractalAttention`; then residual + LayerNorm, a feed-forward network,
residual + LayerNorm.  The model (4 blocks, 16 heads, p=3, L=4, 1024-d by default) projects
SSL-sized frame features (1024-d) to the model dimension, runs the blocks, averages each
utterance's valid frames and classifies with 3 fully connected layers
(fastser.methods.mstr.transformer holds that skeleton and the vanilla-Transformer baseline).

Attention cost: a window of p frames at every level means about p * T * (1 + 1/p + 1/p^2 +
...) query-key pairs per head instead of T^2: at T = 326 SSL frames (6.5 s), p=3, L=4, the
op's FLOPs are under 2% of full attention's QK^T and AV (see :func:`attention_flops`).
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fastser.methods.mstr.transformer import (EncoderBlock, FrameTransformer, VanillaTransformer,
                                              check_implementation)
from fastser.nn import FractalAttention

__all__ = ["MSTR", "MSTRBlock", "VanillaTransformer", "attention_flops"]


class MSTRBlock(EncoderBlock):
    """x = LN(x + FractalAttention(x)); x = LN(x + FFN(x)).  x: (B, T, embed_dim),
    lengths: int64 (B,)."""

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int, *, p: int = 3,
                 levels: int = 4, dropout: float = 0.0, implementation: str = "fused") -> None:
        super().__init__(FractalAttention(embed_dim, num_heads, p=p, levels=levels,
                                          implementation=implementation),
                         embed_dim, ffn_dim, dropout)


class MSTR(FrameTransformer):
    """Multi-Scale Temporal Transformer for utterance classification.

    features (B, T, input_dim) float, lengths int64 (B,) in [1, T] or None -> class logits
    (B, num_classes) and the ``affect_dims`` affect values after them.
    ``implementation="reference"`` runs every block on the reference
    op (fastser.ops.reference.fractal_attention_reference) instead of the fused kernels, with
    the same parameters (state dicts are interchangeable)."""

    def __init__(self, input_dim: int = 1024, num_classes: int = 4, *, embed_dim: int = 1024,
                 num_heads: int = 16, num_blocks: int = 4, p: int = 3, levels: int = 4,
                 ffn_dim: int = 2048, dropout: float = 0.1,
                 classifier_hidden: Optional[Sequence[int]] = None,
                 implementation: str = "fused", positional_encoding: str = "none",
                 affect_dims: int = 0) -> None:
        check_implementation(implementation, "MSTR")
        blocks: List[nn.Module] = [
            MSTRBlock(embed_dim, num_heads, ffn_dim, p=p, levels=levels, dropout=dropout,
                      implementation=implementation)
            for _ in range(num_blocks)]
        super().__init__("MSTR", blocks, input_dim, embed_dim, num_classes, classifier_hidden,
                         dropout, positional_encoding, affect_dims)
        self.p = p
        self.levels = levels


# --- FLOP accounting --------------------------------------------------------------------------

_LINEAR_OPS = ("aten.mm", "aten.addmm")


def attention_flops(model: FrameTransformer, features: torch.Tensor,
                    lengths: Optional[torch.Tensor] = None, *,
                    backward: bool = False) -> dict[str, Any]:
    """FLOPs of one forward (and, with ``backward``, backward) pass of ``model`` on a batch
    shaped like ``features`` (B, T, input_dim), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on a copy of the model on the meta device
    (no memory, no time, and the same count on every backend: PyTorch's fused CPU attention
    kernel has no FLOP formula, so full attention is counted as the two batched matmuls it
    decomposes into on meta tensors).  The count is split into:

    - ``attention``: the attention itself, not its projections: MSTR's fused op (its
      registered formula: Q K^T and A V inside every window of every level, plus the level
      pooling; backward: the formula of its backward op) or the vanilla Transformer's Q K^T
      and A V over all T x T pairs (and their backward matmuls);
    - ``linear``: every matrix multiplication of a linear layer (input projection, QKV, W_O,
      feed-forward, classifier; ``aten.mm`` and ``aten.addmm``);
    - ``total``; and ``by_op``, the counts per aten/fastser op.

    Like FlopCounterMode's own formulas, softmax, GELU, LayerNorm, pooling means and
    element-wise operations are not counted; a multiply-add counts 2.  Padded frames count as
    frames (the formulas see shapes, not lengths).
    """
    meta_model = copy.deepcopy(model).to("meta")
    meta_features = torch.empty(features.shape, dtype=features.dtype, device="meta")
    meta_lengths = None if lengths is None else lengths.to("meta")
    counter = FlopCounterMode(display=False)
    with counter:
        out = meta_model(meta_features, meta_lengths)
        if backward:
            out.sum().backward()
    by_op = {str(op): count for op, count in counter.get_flop_counts()["Global"].items()}
    linear = sum(count for op, count in by_op.items() if op in _LINEAR_OPS)
    total = counter.get_total_flops()
    return {"attention": total - linear, "linear": linear, "total": total, "by_op": by_op}
