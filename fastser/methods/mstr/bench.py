"""Benchmark cases of the MSTR training step (forward, forward+backward of the cross-entropy
loss, gradients zeroed each step as an optimiser loop does): the fused fractal attention op
against the reference op (``implementation="reference"``), in the same model with the
same weights.

Implementations, per size:
- ``fused``: MSTR on ``fastser.ops.fractal_attention``;
- ``reference``: the same model with ``implementation="reference"``, on
  ``fastser.ops.reference.fractal_attention_reference``;
- ``no-attention``: the same model with the op replaced by the identity on v (the QKV and
  W_O projections, LayerNorms, feed-forward networks and classifier all still run).  The
  share of a step spent in the attention op is ``1 - no-attention / fused`` (``1 -
  no-attention / reference`` for the reference op): what removing the op saves, its backward
  included;
- ``transformer``: the vanilla-Transformer baseline at the same sizes
  (``F.scaled_dot_product_attention`` with a key-padding mask).

Sizes: paper sizes, 1024-d SSL features, a 1024-d model of 4 blocks with 16 heads, p=3, L=4;
T = 326 and 1053 SSL frames (6.5 s and 21 s), ragged lengths from T down to T/2; B=8 on the
CPU (where the linear layers dominate a step of a 1024-d model: a record, not a target) and
B=16 on CUDA (``fastser bench --suite mstr --device cuda --dtype bfloat16``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.bench.cases import BenchCase
from fastser.methods.mstr.model import MSTR
from fastser.methods.mstr.transformer import FrameTransformer, VanillaTransformer
from fastser.nn import FractalAttention

SUITE = "mstr"
CLASSES = 4

# (B, T, input_dim, embed_dim, heads, blocks)
CPU_SIZES = [(8, 326, 1024, 1024, 16, 4), (8, 1053, 1024, 1024, 16, 4)]
CUDA_SIZES = [(16, 326, 1024, 1024, 16, 4), (16, 1053, 1024, 1024, 16, 4)]
QUICK_SIZES = [(2, 100, 24, 32, 4, 2)]


class IdentityAttention(nn.Module):
    """A FractalAttention's projections without the op: x -> W_O(v), v from its QKV."""

    def __init__(self, attention: FractalAttention) -> None:
        super().__init__()
        self.qkv, self.out_proj = attention.qkv, attention.out_proj
        self.num_heads, self.head_dim = attention.num_heads, attention.head_dim

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        B, T, E = x.shape
        v = self.qkv(x).view(B, T, 3, self.num_heads * self.head_dim)[:, :, 2]
        return self.out_proj(v.contiguous())  # the op's output would be a fresh tensor too


def without_attention(model: MSTR) -> MSTR:
    """``model`` with every block's fractal attention op replaced by the identity on v."""
    for block in model.blocks:
        block.attention = IdentityAttention(block.attention)
    return model


def ragged_lengths(batch: int, frames: int) -> Tensor:
    """Lengths spread evenly from ``frames`` down to about ``frames / 2``."""
    return torch.linspace(frames, frames // 2 + 1, batch).round().to(torch.int64)


def _make_inputs(batch: int, frames: int, input_dim: int, device: torch.device,
                 dtype: torch.dtype):
    def make():
        gen = torch.Generator().manual_seed(0)
        features = torch.randn(batch, frames, input_dim, generator=gen)
        labels = torch.randint(0, CLASSES, (batch,), generator=gen)
        return (features.to(device=device, dtype=dtype), ragged_lengths(batch, frames).to(device),
                labels.to(device))

    return make


def _training_step(model: FrameTransformer):
    def step(features: Tensor, lengths: Tensor, labels: Tensor) -> Tensor:
        model.zero_grad(set_to_none=True)
        return F.cross_entropy(model(features, lengths).float(), labels)

    return step


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    sizes = QUICK_SIZES if quick else CUDA_SIZES if device.type == "cuda" else CPU_SIZES
    result = []
    for batch, frames, input_dim, embed, heads, blocks in sizes:
        sizes_kw = {"embed_dim": embed, "num_heads": heads, "num_blocks": blocks,
                    "ffn_dim": 2 * embed}

        def build(make_model):
            torch.manual_seed(0)  # the same weights in every implementation
            return make_model().to(device=device, dtype=dtype).train()

        models = {
            "fused": build(lambda: MSTR(input_dim, CLASSES, **sizes_kw)),
            "reference": build(lambda: MSTR(input_dim, CLASSES, implementation="reference",
                                        **sizes_kw)),
            "no-attention": build(lambda: without_attention(MSTR(input_dim, CLASSES,
                                                                 **sizes_kw))),
            "transformer": build(lambda: VanillaTransformer(input_dim, CLASSES, **sizes_kw)),
        }
        result.append(BenchCase(
            suite=SUITE,
            size=f"B={batch} T={frames} d={embed} H={heads} blocks={blocks}",
            make_inputs=_make_inputs(batch, frames, input_dim, device, dtype),
            impls={name: _training_step(model) for name, model in models.items()},
            device=device,
            note="MSTR training step (CE loss), p=3, L=4, ragged lengths T..T/2; reference = "
                 "reference fractal op; no-attention = op replaced by identity (attention "
                 "share = 1 - no-attention/fused); transformer = vanilla baseline (SDPA)",
            meta={"batch": batch, "frames": frames, "input_dim": input_dim,
                  "embed_dim": embed, "heads": heads, "blocks": blocks, "p": 3, "levels": 4},
        ))
    return result
