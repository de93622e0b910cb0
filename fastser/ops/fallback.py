"""The reference backend: a kernel for every fastser op, built on :mod:`fastser.ops.reference`.

They serve ``torch.ops.fastser.*`` on the CPU and CUDA when the compiled extension is not
loaded (fastser/ops/_library.py), with the op contracts of the compiled kernels: the same
argument checks and errors (the op modules' metadata checks, plus the value checks of
csrc/common/checks.cpp and csrc/head_k_pooling_loss/head_k_pooling_loss.cpp), float32
accumulation for float16/bfloat16, exact zeros past each length, the same output layouts and
dtypes.  Backward ops recompute the forward and differentiate it with autograd (so
cross_attention's softmax_stats is checked, not needed).  Slower than the fused kernels; they
exist so that fastser always imports and runs.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from fastser.ops import _checks
from fastser.ops.cross_attention import BACKWARD_OP as CROSS_BACKWARD
from fastser.ops.cross_attention import OP as CROSS
from fastser.ops.cross_attention import _check_backward_args as check_cross_backward
from fastser.ops.cross_attention import _check_forward_args as check_cross_forward
from fastser.ops.fractal_attention import BACKWARD_OP as FRACTAL_BACKWARD
from fastser.ops.fractal_attention import OP as FRACTAL
from fastser.ops.fractal_attention import _check as check_fractal
from fastser.ops.head_k_pooling_loss import BACKWARD_OP as POOLING_BACKWARD
from fastser.ops.head_k_pooling_loss import OP as POOLING
from fastser.ops.head_k_pooling_loss import check_backward_meta as check_pooling_backward
from fastser.ops.head_k_pooling_loss import check_forward_meta as check_pooling_forward
from fastser.ops.reference import fractal_attention_reference


@contextlib.contextmanager
def _autograd() -> Iterator[None]:
    """Autograd recording inside a kernel.  The dispatcher runs an op's kernel with the autograd
    keys excluded (the op's own autograd ran above it); the backward kernels differentiate a
    recomputed forward, so they lift that exclusion, and turn grad mode on, for their scope."""
    keys = torch._C.DispatchKey
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for key in (keys.AutogradFunctionality, keys.AutogradOther, keys.AutogradNestedTensor,
                keys.ADInplaceOrView):
        exclude = exclude.remove(key)
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude):
        with torch.enable_grad():
            yield


def _fresh(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` as a new contiguous tensor of ``dtype`` (never a view of an input or a sibling)."""
    return t.to(dtype).clone(memory_format=torch.contiguous_format)


def _check_padded_lengths(lengths: torch.Tensor | None, max_len: int, op: str) -> None:
    """csrc/common/checks.cpp check_lengths: every entry in [1, max_len]."""
    if lengths is None or lengths.numel() == 0:
        return
    lo, hi = (int(x) for x in torch.aminmax(lengths))
    if lo < 1 or hi > max_len:
        _checks.fail(op, f"every entry of lengths must be in [1, {max_len}] (the padded length), "
                         f"got values in [{lo}, {hi}]")


def _valid_frames(lengths: torch.Tensor | None, batch: int, frames: int,
                  device: torch.device) -> torch.Tensor:
    """bool (B, L): frame i of sequence b is valid (i < lengths[b])."""
    if lengths is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    return torch.arange(frames, device=device)[None, :] < lengths[:, None]


# --- fractal_attention ----------------------------------------------------------------------

def fractal_attention(q, k, v, lengths, p, levels, scale):
    check_fractal(FRACTAL, q, k, v, lengths, p, levels, scale)
    _check_padded_lengths(lengths, q.shape[1], FRACTAL)
    if q.numel() == 0:
        return torch.empty(q.shape, dtype=q.dtype, device=q.device)
    acc = _checks.accumulation_dtype(q.dtype)
    out = fractal_attention_reference(q.to(acc), k.to(acc), v.to(acc), lengths, p, levels, scale)
    return _fresh(out, q.dtype)


def fractal_attention_backward(grad_out, q, k, v, lengths, p, levels, scale):
    check_fractal(FRACTAL_BACKWARD, q, k, v, lengths, p, levels, scale, grad_out)
    _check_padded_lengths(lengths, q.shape[1], FRACTAL_BACKWARD)
    if q.numel() == 0:
        return tuple(torch.zeros(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    acc = _checks.accumulation_dtype(q.dtype)
    with _autograd():
        leaves = [x.detach().to(acc).requires_grad_() for x in (q, k, v)]
        out = fractal_attention_reference(*leaves, lengths, p, levels, scale)
        grads = torch.autograd.grad(out, leaves, grad_out.to(acc))
    return tuple(_fresh(g, q.dtype) for g in grads)


# --- cross_attention ------------------------------------------------------------------------

def _cross_forward(h_text, h_audio, q_text, q_audio, lengths, scale):
    """(c_tt, c_ta, c_aa, c_at, softmax_stats) in the inputs' (accumulation) dtype.  Scores use
    scale·q, padded frames are zeroed before anything reads them (so NaN there changes nothing)
    and masked out of the softmax."""
    batch, frames, _, _ = h_text.shape
    valid = _valid_frames(lengths, batch, frames, h_text.device)
    keep = valid[:, :, None, None]
    text = torch.where(keep, h_text, torch.zeros_like(h_text))
    audio = torch.where(keep, h_audio, torch.zeros_like(h_audio))
    weights, stats = [], []
    for h, q in ((text, q_text), (audio, q_audio)):
        scores = (h * (scale * q)).sum(-1).transpose(1, 2)  # (B, H, L)
        scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        top = scores.amax(-1, keepdim=True).detach()  # softmax is shift-invariant
        terms = torch.exp(scores - top)
        total = terms.sum(-1, keepdim=True)
        weights.append(terms / total)
        stats.append(torch.cat([top, total.detach()], -1))  # (B, H, 2)
    alpha_text, alpha_audio = weights

    def pool(alpha, h):  # Σ_i alpha[b, h, i] h[b, i, h] -> (B, H, d)
        return (alpha.transpose(1, 2)[..., None] * h).sum(1)

    return (pool(alpha_text, text), pool(alpha_text.detach(), audio), pool(alpha_audio, audio),
            pool(alpha_audio.detach(), text), torch.stack(stats))


def cross_attention(h_text, h_audio, q_text, q_audio, lengths, scale):
    check_cross_forward(h_text, h_audio, q_text, q_audio, lengths, scale, CROSS)
    _check_padded_lengths(lengths, h_text.shape[1], CROSS)
    acc = _checks.accumulation_dtype(h_text.dtype)
    outputs = _cross_forward(*(x.to(acc) for x in (h_text, h_audio, q_text, q_audio)), lengths,
                             scale)
    return (*(_fresh(c, h_text.dtype) for c in outputs[:4]), _fresh(outputs[4], acc))


def cross_attention_backward(grad_tt, grad_ta, grad_aa, grad_at, h_text, h_audio, q_text,
                             q_audio, lengths, softmax_stats, scale):
    grads = (grad_tt, grad_ta, grad_aa, grad_at)
    check_cross_backward(grads, h_text, h_audio, q_text, q_audio, lengths, softmax_stats, scale)
    _check_padded_lengths(lengths, h_text.shape[1], CROSS_BACKWARD)
    acc = _checks.accumulation_dtype(h_text.dtype)
    inputs = (h_text, h_audio, q_text, q_audio)
    with _autograd():
        leaves = [x.detach().to(acc).requires_grad_() for x in inputs]
        outputs = _cross_forward(*leaves, lengths, scale)[:4]
        used = [(o, g.to(acc)) for o, g in zip(outputs, grads) if g is not None]
        if used:  # None: an output that takes no part (zero gradient)
            result = torch.autograd.grad([o for o, _ in used], leaves, [g for _, g in used],
                                         allow_unused=True, materialize_grads=True)
        else:
            result = [torch.zeros_like(leaf) for leaf in leaves]
    return tuple(_fresh(g, h_text.dtype) for g in result)


# --- head_k_pooling_loss --------------------------------------------------------------------

def _check_segment_counts(lengths: torch.Tensor, segments: int, op: str) -> None:
    """head_k_pooling_loss.cpp check_length_values: entries >= 1 summing to S."""
    lo, hi = (int(x) for x in torch.aminmax(lengths))
    if lo < 1:
        _checks.fail(op, "every entry of lengths must be >= 1 (an utterance has at least one "
                         f"segment), got a minimum of {lo}")
    total = int(lengths.sum()) if hi <= segments else None
    if hi > segments or total != segments:
        summing = f" summing to {total}" if total is not None else ""
        _checks.fail(op, f"lengths must sum to the number of rows of logits (S = {segments}), "
                         f"got entries in [{lo}, {hi}]{summing}")


def _bce_with_logits(z: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, d loss / d z) of BCEWithLogits against the 0/1 ``target`` in the stable form of
    head_k_pooling_loss.h: infinite z gives the limits, NaN gives NaN."""
    non_negative = z >= 0  # False for NaN
    e = torch.exp(torch.where(non_negative, -z, z))
    r = 1 / (1 + e)
    tail = torch.log1p(e)
    zero = torch.zeros_like(z)
    loss = torch.where(target, torch.where(non_negative, zero, -z),
                       torch.where(non_negative, z, zero)) + tail
    grad = torch.where(target, -torch.where(non_negative, e * r, r),
                       torch.where(non_negative, r, e * r))
    return loss, grad


def _pooling_terms(z, lengths, labels, k, neutral_class, negative_weight, grad_scale):
    """Per-utterance losses (B,) and d loss / d z (S, C) times ``grad_scale``, in z's dtype.
    The segments are padded to (B, Nmax, C); each utterance's K selected segments come first in
    a stable descending sort of the label-class column (NaN first, ties by index, padding
    last)."""
    batch, classes = lengths.numel(), z.shape[1]
    n_max = int(lengths.max())
    device = z.device
    valid = torch.arange(n_max, device=device)[None, :] < lengths[:, None]  # (B, Nmax)
    padded = z.new_zeros(batch, n_max, classes)
    padded[valid] = z
    top = torch.ceil(lengths.double() * k - 1e-6).long().clamp(min=1)
    top = torch.minimum(top, lengths)  # K per utterance
    column = padded.gather(2, labels[:, None, None].expand(batch, n_max, 1)).squeeze(2)
    order = torch.sort(column.masked_fill(~valid, float("-inf")), dim=1, descending=True,
                       stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(n_max, device=device).expand(batch, n_max))
    selected = valid & (rank < top[:, None])  # (B, Nmax)

    class_ids = torch.arange(classes, device=device)
    target = class_ids[None, :] == labels[:, None]  # (B, C)
    eligible = ~target
    if neutral_class is not None:
        eligible &= (class_ids[None, :] != neutral_class) | (labels[:, None] == neutral_class)
    positive_mask = selected[:, :, None].expand(-1, -1, classes)
    negative_mask = (valid & ~selected)[:, :, None] & eligible[:, None, :]
    loss, grad = _bce_with_logits(padded, target[:, None, :].expand_as(padded))

    positive_count = (top * classes).to(z.dtype)
    rest = lengths - top
    negatives = eligible.sum(1)
    has_negative = (rest > 0) & (negatives > 0)
    negative_count = torch.where(has_negative, rest * negatives, 1).to(z.dtype)
    zero = torch.zeros_like(loss)
    positive = torch.where(positive_mask, loss, zero).sum((1, 2))
    negative = torch.where(negative_mask, loss, zero).sum((1, 2))
    negative_term = torch.where(has_negative, negative / negative_count, 0)
    losses = positive / positive_count + negative_weight * negative_term

    positive_factor = grad_scale / positive_count
    negative_factor = grad_scale * negative_weight / negative_count
    factor = torch.where(positive_mask, positive_factor[:, None, None],
                         torch.where(negative_mask, negative_factor[:, None, None], 0))
    # Terms outside the loss get exactly zero, whatever their logit (NaN included).
    grad = torch.where(positive_mask | negative_mask, factor * grad, zero)
    return losses, grad[valid]


def head_k_pooling_loss(logits, lengths, labels, k, neutral_class, negative_weight, reduction,
                        compute_grad):
    check_pooling_forward(logits, lengths, labels, k, neutral_class, negative_weight, reduction)
    _check_segment_counts(lengths, logits.shape[0], POOLING)
    classes = logits.shape[1]
    lo, hi = (int(x) for x in torch.aminmax(labels))
    if lo < 0 or hi >= classes:
        _checks.fail(POOLING, f"every entry of labels must be in [0, {classes}) (C = {classes} "
                         f"classes), got values in [{lo}, {hi}]")
    acc = _checks.accumulation_dtype(logits.dtype)
    batch = lengths.numel()
    grad_scale = 1.0 / batch if reduction == "mean" else 1.0
    losses, grad = _pooling_terms(logits.to(acc), lengths, labels, k, neutral_class,
                                  negative_weight, torch.tensor(grad_scale, dtype=acc))
    if reduction == "none":
        loss = losses.to(logits.dtype)
    else:  # a float64 sum, as the kernels reduce
        total = losses.double().sum()
        loss = (total / batch if reduction == "mean" else total).to(acc).to(logits.dtype)
    if not compute_grad:
        grad = torch.empty(0, dtype=acc, device=logits.device)
    return _fresh(loss, logits.dtype), _fresh(grad, acc)


def head_k_pooling_loss_backward(grad_loss, grad_logits, lengths, reduction):
    check_pooling_backward(grad_loss, grad_logits, lengths, reduction)
    upstream = grad_loss.to(grad_logits.dtype)
    if reduction == "none":
        _check_segment_counts(lengths, grad_logits.shape[0], POOLING_BACKWARD)
        upstream = upstream.repeat_interleave(lengths)[:, None]  # per segment
    return _fresh(grad_logits * upstream, grad_loss.dtype)


KERNELS = {
    FRACTAL: fractal_attention,
    FRACTAL_BACKWARD: fractal_attention_backward,
    CROSS: cross_attention,
    CROSS_BACKWARD: cross_attention_backward,
    POOLING: head_k_pooling_loss,
    POOLING_BACKWARD: head_k_pooling_loss_backward,
}
