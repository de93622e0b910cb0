"""Naive eager PyTorch versions of every fastser op.

They follow docs/ops.md literally, written as the straightforward vectorised
code a competent researcher would write.  They are the oracle of the op tests and the
baseline of the benchmarks, so they favour clarity over speed and never call a fastser kernel.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F


# --- fractal_attention (3.1) -------------------------------------------------------------------

def fractal_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                lengths: Optional[torch.Tensor] = None, p: int = 3,
                                levels: int = 4, scale: Optional[float] = None) -> torch.Tensor:
    """Fractal windowed attention (docs/ops.md, fractal_attention), level by level.

    q, k, v: (B, T, H, D); lengths: int64 (B,) or None (all T).  Returns (B, T, H, D), zero at
    frames past each length.  Level j+1 is ``avg_pool1d`` of level j over groups of p frames
    (``ceil_mode`` keeps the shorter last group); dividing by the pooled validity mask makes it
    the mean of a group's valid frames only.  Each level attends inside windows of p frames
    (padded to a multiple of p, padded and absent keys masked), then GELU(Y) is repeated back
    to the frames it stands for and summed over the levels.  TorchScript-compatible.
    """
    B, T, H, D = q.shape
    if scale is None:
        scale = D ** -0.5
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=q.device)
    valid = torch.arange(T, device=q.device)[None, :] < lengths[:, None]  # (B, T)
    # (B, 3 * H * D, T): channels for avg_pool1d; absent frames zeroed.
    x = torch.stack([q, k, v], dim=2).flatten(2)
    x = torch.where(valid[:, :, None], x, torch.zeros_like(x)).transpose(1, 2)
    mask = valid.to(q.dtype)[:, None, :]  # (B, 1, T)
    out = torch.zeros(B, H, T, D, dtype=q.dtype, device=q.device)
    span = 1  # level-1 frames per frame of this level (a constant: exports keep it static)
    for level in range(levels):
        if level > 0:
            pooled = F.avg_pool1d(x, p, p, 0, True)
            present = F.avg_pool1d(mask, p, p, 0, True)  # fraction of valid frames per group
            x = pooled / present.clamp_min(0.5 / p)
            mask = (present > 0).to(q.dtype)
            span = span * p
        frames = x.shape[-1]
        windows = (frames + p - 1) // p
        pad = windows * p - frames
        xw = F.pad(x, (0, pad)).view(B, 3, H, D, windows, p).permute(1, 0, 2, 4, 5, 3)
        qw, kw, vw = xw[0], xw[1], xw[2]  # (B, H, W, p, D)
        keys = F.pad(mask, (0, pad)).view(B, 1, windows, 1, p) > 0
        keys = keys | ~keys[..., :1]  # windows without a valid frame attend freely (discarded)
        scores = torch.matmul(qw, kw.transpose(-1, -2)) * scale  # (B, H, W, p, p)
        attention = torch.softmax(scores.masked_fill(~keys, float("-inf")), dim=-1)
        y = torch.matmul(attention, vw).reshape(B, H, windows * p, D)[:, :, :frames]
        out = out + F.gelu(y).repeat_interleave(span, dim=2)[:, :, :T]
    out = out.transpose(1, 2)
    return torch.where(valid[:, :, None, None], out, torch.zeros_like(out))


# --- cross_attention (3.2) ----------------------------------------------------------------------

def cross_attention_reference(h_text: torch.Tensor, h_audio: torch.Tensor, q_text: torch.Tensor,
                              q_audio: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                              scale: float = 1.0, stop_gradient: bool = True
                              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Audio-text cross attention with stop-gradient (docs/ops.md, cross_attention);
    ``stop_gradient=False`` lets the crossed contexts' gradients reach the weights too (CAN's
    "- stop-gradient" ablation, which the fused op does not offer).

    h_text, h_audio: (B, L, H, d); q_text, q_audio: (H, d); lengths: int64 (B,) or None.
    Returns c_tt, c_ta, c_aa, c_at, each (B, H, d).  Scriptable (positional ``scale``).
    """
    scores_text = scale * torch.einsum("blhd,hd->bhl", h_text, q_text)
    scores_audio = scale * torch.einsum("blhd,hd->bhl", h_audio, q_audio)
    if lengths is not None:
        frames = torch.arange(h_text.shape[1], device=h_text.device)
        padding = (frames[None, :] >= lengths[:, None])[:, None, :]  # (B, 1, L)
        scores_text = scores_text.masked_fill(padding, float("-inf"))
        scores_audio = scores_audio.masked_fill(padding, float("-inf"))
    alpha_text = torch.softmax(scores_text, dim=-1)
    alpha_audio = torch.softmax(scores_audio, dim=-1)
    c_tt = torch.einsum("bhl,blhd->bhd", alpha_text, h_text)
    crossed_text = alpha_text.detach() if stop_gradient else alpha_text
    crossed_audio = alpha_audio.detach() if stop_gradient else alpha_audio
    c_ta = torch.einsum("bhl,blhd->bhd", crossed_text, h_audio)
    c_aa = torch.einsum("bhl,blhd->bhd", alpha_audio, h_audio)
    c_at = torch.einsum("bhl,blhd->bhd", crossed_audio, h_text)
    return c_tt, c_ta, c_aa, c_at


def cross_attention_loop_reference(h_text: torch.Tensor, h_audio: torch.Tensor,
                                   q_text: torch.Tensor, q_audio: torch.Tensor,
                                   lengths: Optional[torch.Tensor] = None, scale: float = 1.0
                                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                              torch.Tensor]:
    """:func:`cross_attention_reference` written as a Python loop over the sequences, each
    sliced to its length (how ragged batches are often handled by hand)."""
    outputs: List[List[torch.Tensor]] = [[], [], [], []]
    for b in range(h_text.shape[0]):
        n = h_text.shape[1] if lengths is None else int(lengths[b])
        text, audio = h_text[b, :n], h_audio[b, :n]  # (n, H, d)
        alpha_text = torch.softmax(scale * (text * q_text).sum(-1), dim=0)  # (n, H)
        alpha_audio = torch.softmax(scale * (audio * q_audio).sum(-1), dim=0)
        outputs[0].append((alpha_text[..., None] * text).sum(0))
        outputs[1].append((alpha_text.detach()[..., None] * audio).sum(0))
        outputs[2].append((alpha_audio[..., None] * audio).sum(0))
        outputs[3].append((alpha_audio.detach()[..., None] * text).sum(0))
    c_tt, c_ta, c_aa, c_at = [torch.stack(o) for o in outputs]
    return c_tt, c_ta, c_aa, c_at


# --- head_k_pooling_loss (3.3) ----------------------------------------------------------------

def _num_selected(n: int, k: float) -> int:
    return min(n, max(1, math.ceil(k * n - 1e-6)))


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def head_k_pooling_loss_reference(logits: torch.Tensor, lengths: torch.Tensor,
                                  labels: torch.Tensor, k: float = 0.7,
                                  neutral_class: int | None = None, negative_weight: float = 1.0,
                                  reduction: str = "mean") -> torch.Tensor:
    """Vectorised head-k-pooling loss: pad the packed (S, C) logits to (B, Nmax, C), rank each
    utterance's segments by the label-class logit with a stable descending sort (ties: lower
    index first; NaN first, as torch.sort does), mask, and average BCE terms."""
    batch, classes = lengths.numel(), logits.shape[1]
    n_max = int(lengths.max())
    valid = torch.arange(n_max, device=logits.device)[None, :] < lengths[:, None]  # (B, Nmax)
    padded = logits.new_zeros(batch, n_max, classes)
    padded[valid] = logits  # (B, Nmax, C); pad_sequence's backward is quadratic in B
    top = torch.ceil(lengths.double() * k - 1e-6).long().clamp(min=1)
    top = torch.minimum(top, lengths)                                                 # K, (B,)

    score = padded.gather(2, labels[:, None, None].expand(batch, n_max, 1)).squeeze(2)
    order = torch.sort(score.masked_fill(~valid, -math.inf), dim=1, descending=True,
                       stable=True).indices
    positions = torch.arange(n_max, device=logits.device).expand(batch, n_max)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    selected = valid & (rank < top[:, None])                                          # (B, Nmax)
    unselected = valid & ~selected

    class_ids = torch.arange(classes, device=logits.device)
    target = (class_ids[None, :] == labels[:, None]).to(logits.dtype)                 # (B, C)
    eligible = class_ids[None, :] != labels[:, None]
    if neutral_class is not None:
        eligible &= (class_ids[None, :] != neutral_class) | (labels[:, None] == neutral_class)

    positive_mask = selected[:, :, None].expand(-1, -1, classes)
    negative_mask = unselected[:, :, None] & eligible[:, None, :]
    used = positive_mask | negative_mask
    # Zero the unused logits before the BCE, so that a NaN there cannot reach the gradient.
    safe = torch.where(used, padded, torch.zeros_like(padded))
    bce = F.binary_cross_entropy_with_logits(safe, target[:, None, :].expand_as(safe),
                                             reduction="none")
    zero = torch.zeros_like(bce)
    positive = torch.where(positive_mask, bce, zero).sum((1, 2)) / (top * classes)
    negative_count = (lengths - top) * eligible.sum(1)
    negative = torch.where(negative_mask, bce, zero).sum((1, 2)) / negative_count.clamp(min=1)
    return _reduce(positive + negative_weight * negative, reduction)


def head_k_pooling_loss_loop(logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                             k: float = 0.7, neutral_class: int | None = None,
                             negative_weight: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Head-k-pooling loss as the per-utterance Python loop users write."""
    losses = []
    for z, label in zip(logits.split(lengths.tolist()), labels.tolist()):
        n, classes = z.shape
        top = _num_selected(n, k)
        order = torch.sort(z[:, label], descending=True, stable=True).indices
        chosen, rest = order[:top], order[top:]
        target = torch.zeros(classes, dtype=z.dtype, device=z.device)
        target[label] = 1
        loss = F.binary_cross_entropy_with_logits(z[chosen], target.expand(top, classes))
        negatives = [c for c in range(classes) if c != label and (
            neutral_class is None or label == neutral_class or c != neutral_class)]
        if len(rest) > 0 and negatives:
            rest_logits = z[rest][:, negatives]
            zeros = torch.zeros_like(rest_logits)
            negative = F.binary_cross_entropy_with_logits(rest_logits, zeros)
            loss = loss + negative_weight * negative
        losses.append(loss)
    return _reduce(torch.stack(losses), reduction)
