"""Naive eager PyTorch versions of every fastser op.

They follow ARCHITECTURE.md section 3 literally, written as the straightforward vectorised
code a competent researcher would write.  They are the oracle of the op tests and the
baseline of the benchmarks, so they favour clarity over speed and never call a fastser kernel.
"""

from typing import List, Optional, Tuple

import torch


def cross_attention_reference(h_text: torch.Tensor, h_audio: torch.Tensor, q_text: torch.Tensor,
                              q_audio: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                              scale: float = 1.0
                              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Audio-text cross attention with stop-gradient (ARCHITECTURE.md 3.2).

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
    c_ta = torch.einsum("bhl,blhd->bhd", alpha_text.detach(), h_audio)
    c_aa = torch.einsum("bhl,blhd->bhd", alpha_audio, h_audio)
    c_at = torch.einsum("bhl,blhd->bhd", alpha_audio.detach(), h_text)
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
