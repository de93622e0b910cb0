"""Benchmark cases of the fused fractal attention op.

Implementations: ``fused`` (fastser.ops.fractal_attention), ``reference`` (the vectorised
reference in fastser.ops.reference), ``compiled`` (that reference under ``torch.compile``),
``sdpa`` (``F.scaled_dot_product_attention`` over the same q, k, v with a key-padding mask: the
full attention a vanilla Transformer layer would run instead) and ``traffic`` (q + k + v,
forward only: the op's least memory traffic, three inputs read and one output written, at
the speed the device streams it).  Sizes: SSL frame counts of real utterances (T = 326 and
1053), H = 16 heads of D = 64, ragged lengths from T down to T/2.  Each case's ``bytes`` meta
(the least traffic of the forward and of forward+backward) gives the fused op's bandwidth in
the report.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastser.bench.cases import BenchCase
from fastser.ops import fractal_attention
from fastser.ops.reference import fractal_attention_reference

SUITE = "fractal_attention"
P, LEVELS = 3, 4


def _sizes(device: torch.device, quick: bool) -> list[tuple[int, int, int, int]]:
    if quick:
        return [(2, 100, 2, 16)]
    if device.type == "cuda":
        return [(16, 326, 16, 64), (16, 1053, 16, 64)]
    return [(8, 326, 16, 64), (8, 1053, 16, 64)]


def ragged_lengths(batch: int, frames: int) -> torch.Tensor:
    """Lengths spread evenly from ``frames`` down to about ``frames / 2``."""
    return torch.linspace(frames, frames // 2 + 1, batch).round().to(torch.int64)


def _fused(q, k, v, lengths):
    return fractal_attention(q, k, v, lengths, p=P, levels=LEVELS)


def _reference(q, k, v, lengths):
    return fractal_attention_reference(q, k, v, lengths, P, LEVELS)


def _sdpa(q, k, v, lengths):
    frames = q.shape[1]
    keep = torch.arange(frames, device=q.device)[None, :] < lengths[:, None]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=keep[:, None, None, :])
    return out.transpose(1, 2)


def _traffic(q, k, v, lengths):
    return q + k + v


def least_traffic_bytes(B: int, T: int, H: int, D: int, dtype: torch.dtype) -> dict[str, int]:
    """Bytes the op must move at least: forward reads q, k, v and writes the output once;
    backward reads q, k, v and grad_out and writes dq, dk, dv once (lengths not counted)."""
    tensor = B * T * H * D * dtype.itemsize
    return {"forward": 4 * tensor, "forward_backward": (4 + 7) * tensor}


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    """One case per size; q, k, v are fresh leaves that require gradients."""
    result = []
    for B, T, H, D in _sizes(device, quick):

        def make_inputs(B=B, T=T, H=H, D=D):
            gen = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(B, T, H, D, generator=gen).to(device=device, dtype=dtype)
                       .requires_grad_() for _ in range(3))
            return q, k, v, ragged_lengths(B, T).to(device)

        impls = {"fused": _fused, "reference": _reference}
        if not quick:
            impls["compiled"] = torch.compile(_reference, fullgraph=True)
        impls["sdpa"] = _sdpa
        impls["traffic"] = _traffic
        result.append(BenchCase(
            suite=SUITE, size=f"B={B} T={T} H={H} D={D}", make_inputs=make_inputs,
            impls=impls, device=device, forward_only=("traffic",),
            note=f"p={P}, levels={LEVELS}; ragged lengths from T down to T/2; "
                 "sdpa = full attention with a key-padding mask; traffic = q + k + v (the "
                 "op's least memory traffic, forward only)",
            meta={"B": B, "T": T, "H": H, "D": D, "p": P, "levels": LEVELS,
                  "bytes": least_traffic_bytes(B, T, H, D, dtype)},
        ))
    return result
