"""Benchmark cases of ``fastser.ops.cross_attention`` against its straightforward PyTorch versions."""

from __future__ import annotations

import torch

from fastser.bench.cases import BenchCase
from fastser.ops import cross_attention
from fastser.ops.reference import cross_attention_loop_reference, cross_attention_reference

SUITE = "cross_attention"

# (batch, longest sequence, heads, head dim): CAN's word-aligned segments, then a long one.
SIZES = [(64, 100, 4, 64), (32, 326, 8, 64)]
QUICK_SIZES = [(4, 16, 2, 8)]


def _make_inputs(batch: int, frames: int, heads: int, dim: int, device: torch.device,
                 dtype: torch.dtype):
    def make():
        gen = torch.Generator().manual_seed(0)

        def leaf(*shape, std=1.0):
            x = std * torch.randn(*shape, generator=gen)
            return x.to(device=device, dtype=dtype).requires_grad_()

        lengths = torch.randint(1, frames + 1, (batch,), generator=gen)
        lengths[0] = frames
        return (leaf(batch, frames, heads, dim), leaf(batch, frames, heads, dim),
                leaf(heads, dim, std=dim ** -0.5), leaf(heads, dim, std=dim ** -0.5),
                lengths.to(device))

    return make


def _fused(h_text, h_audio, q_text, q_audio, lengths):
    return cross_attention(h_text, h_audio, q_text, q_audio, lengths)


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    compiled = torch.compile(cross_attention_reference, dynamic=False)
    result = []
    for index, (batch, frames, heads, dim) in enumerate(QUICK_SIZES if quick else SIZES):
        impls = {"fused": _fused, "reference": cross_attention_reference, "compiled": compiled}
        if index == 0:  # the Python loop only at the first size: it is slow at long ones
            impls["loop"] = cross_attention_loop_reference
        result.append(BenchCase(
            suite=SUITE,
            size=f"B={batch} L<={frames} H={heads} d={dim}",
            make_inputs=_make_inputs(batch, frames, heads, dim, device, dtype),
            impls=impls,
            device=device,
            note="ragged lengths uniform in [1, L] (one full); reference = vectorised PyTorch "
                 "reference, compiled = torch.compile of it, loop = Python loop over sequences",
            meta={"batch": batch, "frames": frames, "heads": heads, "dim": dim},
        ))
    return result
