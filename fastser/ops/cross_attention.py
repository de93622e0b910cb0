"""``fastser.ops.cross_attention``: fused audio-text cross attention with stop-gradient
(docs/ops.md, cross_attention), kernels in csrc/cross_attention/.

The op ``torch.ops.fastser.cross_attention`` returns the four contexts and ``softmax_stats``
(2, B, H, 2): the max score and Σ exp(score − max) of the text [0] and audio [1] attention in
the accumulation dtype (float64 for float64 inputs, float32 otherwise); the backward recomputes
the forward's weights from them while reading h once.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import register_flop_formula

from fastser.ops import _checks

OP = "cross_attention"
BACKWARD_OP = "cross_attention_backward"
CUDA_MAX_HEAD_DIM = 1024  # csrc/cross_attention/cross_attention.h: kCudaMaxHeadDim


def cross_attention(h_text: torch.Tensor, h_audio: torch.Tensor, q_text: torch.Tensor,
                    q_audio: torch.Tensor, lengths: torch.Tensor | None = None, *,
                    scale: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-head attention pooling of aligned text and audio sequences by learned queries,
    each modality's weights also pooling the other modality (without gradient through them).

    h_text, h_audio: (B, L, H, d); q_text, q_audio: (H, d); lengths: int64 (B,) in [1, L]
    (frames at or past a length take no part), None for all L.  Per head h and sequence b:
    α^T = softmax_i(scale·<q_text[h], h_text[b, i, h]>), α^A likewise, and
    c_tt = Σ α^T h_text, c_ta = Σ sg(α^T) h_audio, c_aa = Σ α^A h_audio,
    c_at = Σ sg(α^A) h_text, each (B, H, d).
    """
    c_tt, c_ta, c_aa, c_at, _ = torch.ops.fastser.cross_attention(
        h_text, h_audio, q_text, q_audio, lengths, float(scale))
    return c_tt, c_ta, c_aa, c_at


def _check_forward_args(h_text, h_audio, q_text, q_audio, lengths, scale, op):
    """Metadata checks of csrc/cross_attention/cross_attention.cpp, in the same order."""
    for t, name in ((h_text, "h_text"), (h_audio, "h_audio"), (q_text, "q_text"),
                    (q_audio, "q_audio")):
        _checks.check_floating(t, op, name)
    _checks.check_dim(h_text, 4, op, "h_text", "(B, L, H, d)")
    _checks.check_dim(h_audio, 4, op, "h_audio", "(B, L, H, d)")
    _checks.check_dim(q_text, 2, op, "q_text", "(H, d)")
    _checks.check_dim(q_audio, 2, op, "q_audio", "(H, d)")
    _checks.check_same_shape(h_audio, h_text, op, "h_audio", "h_text")
    batch, frames, heads, dim = h_text.shape
    for q, name in ((q_text, "q_text"), (q_audio, "q_audio")):
        if tuple(q.shape) != (heads, dim):
            _checks.fail(op, f"{name} must have shape (H, d) = ({heads}, {dim}) to match h_text "
                             f"{list(h_text.shape)}, got {list(q.shape)}")
    for t, name in ((h_audio, "h_audio"), (q_text, "q_text"), (q_audio, "q_audio")):
        _checks.check_same_device(t, h_text, op, name, "h_text")
    for t, name in ((h_audio, "h_audio"), (q_text, "q_text"), (q_audio, "q_audio")):
        _checks.check_same_dtype(t, h_text, op, name, "h_text")
    _checks.check_device_dtype(h_text, op, "h_text")
    if frames < 1:
        _checks.fail(op, f"h_text must have at least one frame (L >= 1), got shape "
                         f"{list(h_text.shape)}")
    if h_text.device.type == "cuda" and dim > CUDA_MAX_HEAD_DIM:
        _checks.fail(op, f"the head dimension d of h_text must be at most {CUDA_MAX_HEAD_DIM} "
                         f"on CUDA, got {dim}")
    _checks.check_finite(scale, op, "scale")
    _checks.check_lengths(lengths, batch, h_text, op)
    return batch, frames, heads, dim


@torch.library.register_fake(f"fastser::{OP}")
def _cross_attention_fake(h_text, h_audio, q_text, q_audio, lengths, scale):
    batch, _, heads, dim = _check_forward_args(h_text, h_audio, q_text, q_audio, lengths, scale,
                                               OP)
    contexts = [h_text.new_empty((batch, heads, dim)) for _ in range(4)]
    stats = h_text.new_empty((2, batch, heads, 2),
                             dtype=_checks.accumulation_dtype(h_text.dtype))
    return (*contexts, stats)


def _check_backward_args(grads, h_text, h_audio, q_text, q_audio, lengths, softmax_stats,
                         scale):
    """Metadata checks of the backward op: the forward's, the output gradients grad_tt,
    grad_ta, grad_aa, grad_at (each None or (B, H, d)) and softmax_stats (2, B, H, 2)."""
    batch, _, heads, dim = _check_forward_args(h_text, h_audio, q_text, q_audio, lengths, scale,
                                               BACKWARD_OP)
    for t, name in zip(grads, ("grad_tt", "grad_ta", "grad_aa", "grad_at")):
        if t is None:
            continue
        if tuple(t.shape) != (batch, heads, dim):
            _checks.fail(BACKWARD_OP, f"{name} must have shape (B, H, d) = "
                                      f"{[batch, heads, dim]}, got {list(t.shape)}")
        _checks.check_same_device(t, h_text, BACKWARD_OP, name, "h_text")
        _checks.check_same_dtype(t, h_text, BACKWARD_OP, name, "h_text")
    if tuple(softmax_stats.shape) != (2, batch, heads, 2):
        _checks.fail(BACKWARD_OP, f"softmax_stats must have shape (2, B, H, 2) = "
                                  f"{[2, batch, heads, 2]}, got {list(softmax_stats.shape)}")
    _checks.check_same_device(softmax_stats, h_text, BACKWARD_OP, "softmax_stats", "h_text")
    stats_dtype = _checks.accumulation_dtype(h_text.dtype)
    if softmax_stats.dtype != stats_dtype:
        name = _checks.dtype_name
        _checks.fail(BACKWARD_OP, f"softmax_stats must be {name(stats_dtype)} for "
                                  f"{name(h_text.dtype)} inputs, got {name(softmax_stats.dtype)}")


@torch.library.register_fake(f"fastser::{BACKWARD_OP}")
def _cross_attention_backward_fake(grad_tt, grad_ta, grad_aa, grad_at, h_text, h_audio, q_text,
                                   q_audio, lengths, softmax_stats, scale):
    _check_backward_args((grad_tt, grad_ta, grad_aa, grad_at), h_text, h_audio, q_text, q_audio,
                         lengths, softmax_stats, scale)
    heads, dim = q_text.shape
    return (h_text.new_empty(h_text.shape), h_text.new_empty(h_text.shape),
            h_text.new_empty((heads, dim)), h_text.new_empty((heads, dim)))


def _setup_context(ctx, inputs, output):
    h_text, h_audio, q_text, q_audio, lengths, scale = inputs
    softmax_stats = output[4]
    ctx.mark_non_differentiable(softmax_stats)
    ctx.set_materialize_grads(False)  # unused outputs' gradients arrive as None
    ctx.save_for_backward(h_text, h_audio, q_text, q_audio, lengths, softmax_stats)
    ctx.scale = scale


def _backward(ctx, grad_tt, grad_ta, grad_aa, grad_at, _grad_stats):
    h_text, h_audio, q_text, q_audio, lengths, softmax_stats = ctx.saved_tensors
    grads = torch.ops.fastser.cross_attention_backward(
        grad_tt, grad_ta, grad_aa, grad_at, h_text, h_audio, q_text, q_audio, lengths,
        softmax_stats, ctx.scale)
    return (*grads, None, None)


torch.library.register_autograd(f"fastser::{OP}", _backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.fastser.cross_attention)
def _cross_attention_flop(h_text_shape, *args, **kwargs) -> int:
    """Per frame and head (padding included): two scores (2·2d) and four weighted sums (4·2d)."""
    batch, frames, heads, dim = h_text_shape
    return 12 * batch * frames * heads * dim


@register_flop_formula(torch.ops.fastser.cross_attention_backward)
def _cross_attention_backward_flop(grad_tt_shape, grad_ta_shape, grad_aa_shape, grad_at_shape,
                                   h_text_shape, *args, **kwargs) -> int:
    """Per frame and head: four dot products (4·2d), four weighted sums for dq (4·2d) and two
    h gradients of three terms each (6·2d)."""
    batch, frames, heads, dim = h_text_shape
    return 28 * batch * frames * heads * dim
