"""Fused fractal windowed attention (docs/ops.md): the public function, fake kernels,
autograd and FLOP formulas of ``torch.ops.fastser.fractal_attention``.

The kernels (csrc/fractal_attention/) process each (sequence, block of p**levels frames, head)
tile on its own: they read q, k, v once, build the pooled levels in fast memory and write the
output once; the backward op recomputes a tile's forward values instead of saving them.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import register_flop_formula

from fastser.ops import _checks
from fastser.ops._library import NAMESPACE

OP = "fractal_attention"
BACKWARD_OP = "fractal_attention_backward"


def fractal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      lengths: torch.Tensor | None = None, *, p: int = 3, levels: int = 4,
                      scale: float | None = None) -> torch.Tensor:
    """Multi-level windowed attention of MSTR's fractal self-attention.

    q, k, v: (B, T, H, D) float16/bfloat16/float32 (float64 on the CPU), any strides.
    lengths: int64 (B,) with entries in [1, T], or None (every sequence has T frames).
    Level 1 is the valid frames; level j+1 averages groups of ``p`` level-j frames (the last
    group may be shorter).  Each level attends inside windows of ``p`` frames with
    ``softmax(scale * Q K^T) V`` (scale defaults to 1/sqrt(D)), and output frame t is
    ``sum_j GELU(Y_j[t // p**(j-1)])`` over ``levels`` levels (exact erf GELU); frames past a
    length are 0.  Returns (B, T, H, D), contiguous, in q's dtype.  Differentiable in q, k, v.
    A ``scale`` that is not finite is a ValueError.
    """
    return torch.ops.fastser.fractal_attention(q, k, v, lengths, p, levels, scale)


def _check(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           lengths: torch.Tensor | None, p: int, levels: int, scale: float | None,
           grad_out: torch.Tensor | None = None) -> None:
    """Metadata checks mirroring csrc/fractal_attention/fractal_attention.cpp."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.check_floating(t, op, name)
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.check_dim(t, 4, op, name, "(B, T, H, D)")
    _checks.check_same_shape(k, q, op, "k", "q")
    _checks.check_same_shape(v, q, op, "v", "q")
    _checks.check_same_device(k, q, op, "k", "q")
    _checks.check_same_device(v, q, op, "v", "q")
    _checks.check_same_dtype(k, q, op, "k", "q")
    _checks.check_same_dtype(v, q, op, "v", "q")
    _checks.check_device_dtype(q, op, "q")
    if grad_out is not None:
        _checks.check_same_shape(grad_out, q, op, "grad_out", "q")
        _checks.check_same_device(grad_out, q, op, "grad_out", "q")
        _checks.check_same_dtype(grad_out, q, op, "grad_out", "q")
    if p < 2:
        _checks.fail(op, f"p (frames per window and per pooled group) must be >= 2, got {p}")
    if levels < 1:
        _checks.fail(op, f"levels must be >= 1, got {levels}")
    if scale is not None:
        _checks.check_finite(scale, op, "scale")
    _checks.check_lengths(lengths, q.shape[0], q, op)


@torch.library.register_fake(f"{NAMESPACE}::{OP}")
def _fractal_attention_fake(q, k, v, lengths, p, levels, scale):
    _check(OP, q, k, v, lengths, p, levels, scale)
    return q.new_empty(q.shape)


@torch.library.register_fake(f"{NAMESPACE}::{BACKWARD_OP}")
def _fractal_attention_backward_fake(grad_out, q, k, v, lengths, p, levels, scale):
    _check(BACKWARD_OP, q, k, v, lengths, p, levels, scale, grad_out)
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, lengths, p, levels, scale = inputs
    ctx.save_for_backward(q, k, v, lengths)
    ctx.p, ctx.levels, ctx.scale = p, levels, scale


def _backward(ctx, grad_out):
    q, k, v, lengths = ctx.saved_tensors
    dq, dk, dv = torch.ops.fastser.fractal_attention_backward(
        grad_out, q, k, v, lengths, ctx.p, ctx.levels, ctx.scale)
    return dq, dk, dv, None, None, None, None


def _no_double_backward(ctx, *grads):
    raise RuntimeError(f"fastser.{OP}: gradients of its gradients (double backward) are not "
                       "supported")


torch.library.register_autograd(f"{NAMESPACE}::{OP}", _backward, setup_context=_setup_context)
torch.library.register_autograd(f"{NAMESPACE}::{BACKWARD_OP}", _no_double_backward)


# --- FLOPs ----------------------------------------------------------------------------------

def _level_work(frames: int, p: int, levels: int) -> tuple[int, int]:
    """(query-key pairs inside the windows of every level, frames pooled into the levels
    above) for one sequence of ``frames`` frames and one head."""
    pairs = pooled = 0
    for level in range(levels):
        if level > 0:
            if frames == 1:  # every level left pools one frame, which attends to itself
                return pairs + levels - level, pooled + levels - level
            pooled += frames
            frames = (frames + p - 1) // p
        full, rest = divmod(frames, p)
        pairs += full * p * p + rest * rest
    return pairs, pooled


def fractal_attention_flops(shape: torch.Size | tuple[int, ...], p: int, levels: int, *,
                            backward: bool = False) -> int:
    """FLOPs of the op on padded (B, T, H, D) inputs (every frame counted as valid).

    Forward, per query-key pair of a window: 2*D for Q K^T and 2*D for A V (a multiply-add
    counts 2); per pooled frame: D for each of the q, k, v means.  Backward: the recomputed
    forward, four more products per pair (dA = dY V^T, dV = A^T dY, dQ = dS K, dK = dS^T Q),
    the pooling of grad_out and the spreading of the q, k, v gradients back down the levels.
    Like ``FlopCounterMode``'s attention formulas, softmax, GELU and the level sums are not
    counted.
    """
    B, T, H, D = shape
    pairs, pooled = _level_work(T, p, levels)
    forward = 4 * D * pairs + 3 * D * pooled
    if not backward:
        return B * H * forward
    return B * H * (forward + 8 * D * pairs + 4 * D * pooled)


@register_flop_formula(torch.ops.fastser.fractal_attention)
def _forward_flops(q_shape, k_shape, v_shape, lengths_shape, p, levels, scale, *args,
                   out_shape=None, **kwargs) -> int:
    return fractal_attention_flops(q_shape, p, levels)


@register_flop_formula(torch.ops.fastser.fractal_attention_backward)
def _backward_flops(grad_shape, q_shape, k_shape, v_shape, lengths_shape, p, levels, scale,
                    *args, out_shape=None, **kwargs) -> int:
    return fractal_attention_flops(q_shape, p, levels, backward=True)
