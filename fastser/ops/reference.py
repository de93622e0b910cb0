"""Naive eager PyTorch versions of every fastser op.

They follow ARCHITECTURE.md section 3 literally, written as the straightforward vectorised
code a competent researcher would write.  They are the oracle of the op tests and the
baseline of the benchmarks, so they favour clarity over speed and never call a fastser kernel.
"""

from typing import Optional

import torch
import torch.nn.functional as F


def fractal_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                lengths: Optional[torch.Tensor] = None, p: int = 3,
                                levels: int = 4, scale: Optional[float] = None) -> torch.Tensor:
    """Fractal windowed attention (ARCHITECTURE.md 3.1), level by level.

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
    span = 1  # level-1 frames per frame of this level (capped at T)
    for level in range(levels):
        if level > 0:
            pooled = F.avg_pool1d(x, p, p, 0, True)
            present = F.avg_pool1d(mask, p, p, 0, True)  # fraction of valid frames per group
            x = pooled / present.clamp_min(0.5 / p)
            mask = (present > 0).to(q.dtype)
            span = min(span * p, T)
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
