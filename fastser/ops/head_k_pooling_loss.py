"""``fastser.ops.head_k_pooling_loss``: GLRF's head-k-pooling loss (docs/ops.md) as one
fused op over the packed segments of a batch of utterances.

For an utterance of N segments with label i, the K = min(N, max(1, ceil(k·N − 1e-6))) segments
with the largest logit for class i ("decision makers"; ties go to the lower segment index) take
a one-vs-rest BCE over every class, averaged over K·C; the other N − K segments take a BCE
towards 0 over the eligible negative classes E (every c ≠ i, and c ≠ neutral_class unless i is
the neutral class), averaged over (N − K)·|E| (0 when either is empty) and scaled by
negative_weight.  Logits of unselected segments for classes outside E get exactly zero gradient.

NaN semantics (the kernels and :mod:`fastser.ops.reference` agree): NaN ranks above +inf in
the selection, as in ``torch.sort``, so a NaN in the label-class column of an utterance is
always selected and makes that utterance's loss NaN; any other NaN that enters a term makes
the loss NaN, and its own gradient entry is NaN; a NaN logit that enters no term (an
unselected segment, a class outside E) leaves the loss alone and gets a zero gradient.  The
reductions propagate NaN.  Infinite logits give BCE's limits (BCE(+inf, 1) = 0,
BCE(+inf, 0) = +inf), where ``F.binary_cross_entropy_with_logits`` gives NaN.

The forward computes the gradient with the loss (when logits need one) and the backward only
scales it by the upstream gradient: one op boundary each way.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import register_flop_formula

from fastser.ops import _checks

OP = "head_k_pooling_loss"
BACKWARD_OP = "head_k_pooling_loss_backward"
REDUCTIONS = ("mean", "sum", "none")
# Counted work per logit: BCE in its stable form and its derivative (forward), one scaling
# multiplication (backward).
FORWARD_FLOPS_PER_LOGIT = 8
BACKWARD_FLOPS_PER_LOGIT = 1


def head_k_pooling_loss(logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, *,
                        k: float = 0.7, neutral_class: int | None = None,
                        negative_weight: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Head-k-pooling loss of B utterances whose segments are packed back to back.

    logits: (S, C) float16/bfloat16/float32 segment logits (float64 too on the CPU),
    S = lengths.sum();
    lengths: (B,) int64 segment counts, each >= 1; labels: (B,) int64 in [0, C).
    Returns a scalar for ``reduction`` "mean" (over utterances) or "sum", (B,) for "none", in
    the dtype of ``logits``.
    """
    compute_grad = logits.requires_grad and torch.is_grad_enabled()
    loss, _ = torch.ops.fastser.head_k_pooling_loss(
        logits, lengths, labels, float(k), neutral_class, float(negative_weight), reduction,
        compute_grad)
    return loss


# --- metadata checks (the fake kernels; the C++ kernels check the same and the values) ------

def _check_lengths_meta(lengths: torch.Tensor, like: torch.Tensor, op: str) -> int:
    if lengths.dim() != 1:
        _checks.fail(op, "lengths must be a 1-D (B,) tensor of segment counts, got shape "
                     f"{list(lengths.shape)}")
    batch = lengths.shape[0]
    if batch < 1:
        _checks.fail(op, "lengths must hold at least one utterance, got shape "
                     f"{list(lengths.shape)}")
    _checks.check_index_vector(lengths, batch, like, op, "lengths")
    return batch


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in REDUCTIONS:
        _checks.fail(op, f"reduction must be 'mean', 'sum' or 'none', got '{reduction}'")


def check_forward_meta(logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                       k: float, neutral_class: int | None, negative_weight: float,
                       reduction: str) -> None:
    _checks.check_dim(logits, 2, OP, "logits",
                      "(S, C): the segments of every utterance back to back")
    _checks.check_floating(logits, OP, "logits")
    _checks.check_device_dtype(logits, OP, "logits")
    classes = logits.shape[1]
    if classes < 1:
        _checks.fail(OP, "logits must have at least one class column, got shape "
                     f"{list(logits.shape)}")
    batch = _check_lengths_meta(lengths, logits, OP)
    _checks.check_index_vector(labels, batch, logits, OP, "labels")
    check_hyperparameters(k, neutral_class, negative_weight, reduction, classes)


def check_hyperparameters(k: float, neutral_class: int | None, negative_weight: float,
                          reduction: str, classes: int | None = None) -> None:
    """The scalar arguments (``classes``: C when known, to bound neutral_class)."""
    if not 0.0 < k <= 1.0:
        _checks.fail(OP, f"k must be in (0, 1], got {k}")
    if neutral_class is not None and classes is not None and not 0 <= neutral_class < classes:
        _checks.fail(OP, f"neutral_class must be None or in [0, {classes}) (C = {classes} "
                     f"classes), got {neutral_class}")
    if neutral_class is not None and neutral_class < 0:
        _checks.fail(OP, f"neutral_class must be None or a class index >= 0, got {neutral_class}")
    if not math.isfinite(negative_weight):
        _checks.fail(OP, f"negative_weight must be finite, got {negative_weight}")
    _check_reduction(reduction, OP)


def check_backward_meta(grad_loss: torch.Tensor, grad_logits: torch.Tensor,
                        lengths: torch.Tensor, reduction: str) -> None:
    _check_reduction(reduction, BACKWARD_OP)
    _checks.check_dim(grad_logits, 2, BACKWARD_OP, "grad_logits", "(S, C)")
    _checks.check_floating(grad_loss, BACKWARD_OP, "grad_loss")
    _checks.check_device_dtype(grad_loss, BACKWARD_OP, "grad_loss")
    acc = _checks.accumulation_dtype(grad_loss.dtype)
    if grad_logits.dtype != acc:
        name = _checks.dtype_name
        _checks.fail(BACKWARD_OP, f"grad_logits must have the accumulation dtype of grad_loss "
                     f"({name(acc)} for {name(grad_loss.dtype)}), got {name(grad_logits.dtype)}")
    _checks.check_same_device(grad_loss, grad_logits, BACKWARD_OP, "grad_loss", "grad_logits")
    batch = _check_lengths_meta(lengths, grad_logits, BACKWARD_OP)
    if reduction != "none" and grad_loss.dim() != 0:
        _checks.fail(BACKWARD_OP, f"grad_loss must be a scalar for reduction '{reduction}', got "
                     f"shape {list(grad_loss.shape)}")
    if reduction == "none" and tuple(grad_loss.shape) != (batch,):
        _checks.fail(BACKWARD_OP, f"grad_loss must have shape ({batch}) for reduction 'none', "
                     f"got shape {list(grad_loss.shape)}")


@torch.library.register_fake(f"fastser::{OP}")
def _head_k_pooling_loss_fake(logits, lengths, labels, k, neutral_class, negative_weight,
                              reduction, compute_grad):
    check_forward_meta(logits, lengths, labels, k, neutral_class, negative_weight, reduction)
    loss_shape = (lengths.shape[0],) if reduction == "none" else ()
    grad_shape = tuple(logits.shape) if compute_grad else (0,)
    return (logits.new_empty(loss_shape),
            logits.new_empty(grad_shape, dtype=_checks.accumulation_dtype(logits.dtype)))


@torch.library.register_fake(f"fastser::{BACKWARD_OP}")
def _head_k_pooling_loss_backward_fake(grad_loss, grad_logits, lengths, reduction):
    check_backward_meta(grad_loss, grad_logits, lengths, reduction)
    return grad_logits.new_empty(grad_logits.shape, dtype=grad_loss.dtype)


# --- autograd --------------------------------------------------------------------------------

def _setup_context(ctx, inputs, output):
    _, lengths, _, _, _, _, reduction, compute_grad = inputs
    _, grad_logits = output
    ctx.mark_non_differentiable(grad_logits)
    ctx.reduction = reduction
    ctx.compute_grad = compute_grad
    ctx.save_for_backward(grad_logits, lengths)


def _backward(ctx, grad_loss, _grad_of_gradient):
    if not ctx.compute_grad:
        raise RuntimeError(
            f"fastser.{OP}: the forward ran with compute_grad=False, so it has no gradient; "
            "call it with compute_grad=True (fastser.ops.head_k_pooling_loss does whenever "
            "logits require grad)")
    grad_logits, lengths = ctx.saved_tensors
    grad = torch.ops.fastser.head_k_pooling_loss_backward(grad_loss, grad_logits, lengths,
                                                          ctx.reduction)
    return grad, None, None, None, None, None, None, None


torch.library.register_autograd(f"fastser::{OP}", _backward, setup_context=_setup_context)


# --- FLOP formulas ---------------------------------------------------------------------------

@register_flop_formula(torch.ops.fastser.head_k_pooling_loss)
def _forward_flops(logits_shape, *args, **kwargs) -> int:
    segments, classes = logits_shape
    return FORWARD_FLOPS_PER_LOGIT * segments * classes


@register_flop_formula(torch.ops.fastser.head_k_pooling_loss_backward)
def _backward_flops(grad_loss_shape, grad_logits_shape, *args, **kwargs) -> int:
    segments, classes = grad_logits_shape
    return BACKWARD_FLOPS_PER_LOGIT * segments * classes
