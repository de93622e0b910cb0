"""SAP (Hyeon et al., "Enhancing SER through Segmental Average Pooling of Self-Supervised
Learning Features"): the head over SSL frame features.

For an utterance with n valid frames x_0..x_{n-1} (D each) and VAD speech frames S:
- GAP = mean of x over the n frames;
- the speech frames attend to one another only (multi-head self-attention with keys and
  queries in S), SAP = mean of the attention outputs over S;
- SR = [GAP, SAP] (2D) -> Linear(2D, 32) -> ReLU -> dropout -> an emotion classifier (C) and a
  affect regressor (valence and arousal in the paper), trained jointly. ``pooling="gap"`` or
  ``"sap"`` keeps one of the two (Table 1's GAP and SAP rows: D features; "gap" never runs
  the attention).
An utterance in which VAD finds no speech pools all its valid frames instead (``fallback``).

The batched pooling packs each utterance's speech frames to the front (a stable sort of the
mask), so the attention runs over S_max <= F frames with a key padding mask: no loop over
utterances, no attention to non-speech or padded frames, which are zeroed before it (their
values, even NaN, change nothing). ``implementation="reference"`` pools utterance by
utterance in a Python loop, the way the method is usually written: the equivalence oracle and
benchmark baseline.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.nn.guards import assert_range, tracing
from fastser.train.kit.settings import IMPLEMENTATIONS

#: What SR holds: both poolings (the paper's method), or one of them (Table 1's rows).
POOLINGS = ("gap+sap", "gap", "sap")


class SAPOutput(NamedTuple):
    """logits (B, C); regression (B, K): one value per affect target (the paper's valence and
    arousal), (B, 0) without regressors;
    fallback (B,) bool: VAD found no speech, so all valid frames were pooled."""

    logits: Tensor
    regression: Tensor
    fallback: Tensor


def check_inputs(features: Tensor, lengths: Tensor, speech: Tensor) -> None:
    """ValueError unless features (B, F, D) float, lengths (B,) int64 in [1, F] and speech
    (B, F) bool."""
    if features.dim() != 3 or not features.is_floating_point():
        raise ValueError(f"SAP: features must be float (B, F, D), got {features.dtype} "
                         f"{list(features.shape)}")
    batch, frames = features.shape[0], features.shape[1]
    if lengths.dtype != torch.long or lengths.shape != (batch,):
        raise ValueError(f"SAP: lengths must be int64 ({batch},), got {lengths.dtype} "
                         f"{list(lengths.shape)}")
    if speech.dtype != torch.bool or speech.shape != (batch, frames):
        raise ValueError(f"SAP: speech must be bool ({batch}, {frames}), got {speech.dtype} "
                         f"{list(speech.shape)}")
    if batch == 0:
        raise ValueError("SAP: empty batch")
    if tracing():  # torch.compile / torch.export: the value check below as a graph assert
        assert_range(lengths, 1, frames, "SAP: lengths must be in [1, F]")
        return
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest < 1 or longest > frames:
        raise ValueError(f"SAP: lengths must be in [1, {frames}], got values from {shortest} "
                         f"to {longest}")


def global_average(features: Tensor, lengths: Tensor,
                   speech: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(features zeroed past each length (B, F, D), GAP (B, D): the mean of each utterance's
    valid frames, the speech frames SAP pools (B, F) and fallback (B,): VAD found no speech,
    so all valid frames are pooled; see :func:`speech_frames`)."""
    valid, speech, fallback = speech_frames(lengths, speech)
    zero = torch.zeros((), dtype=features.dtype, device=features.device)
    features = torch.where(valid.unsqueeze(2), features, zero)
    gap = features.sum(dim=1) / lengths.unsqueeze(1).to(features.dtype)
    return features, gap, speech, fallback


def speech_frames(lengths: Tensor, speech: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(valid (B, F), pooled speech frames (B, F), fallback (B,)): speech restricted to valid
    frames; rows without speech fall back to all valid frames."""
    frames = speech.shape[1]
    valid = torch.arange(frames, device=speech.device) < lengths.unsqueeze(1)
    speech = speech & valid
    fallback = ~speech.any(dim=1)
    return valid, speech | (valid & fallback.unsqueeze(1)), fallback


class SAPHead(nn.Module):
    """SSL features (B, F, D), frame lengths (B,), VAD speech mask (B, F) -> SAPOutput.

    heads must divide D. affect_dims: outputs of the affect regressor (0: none, the output's
    regression is then (B, 0)); num_classes may be 0 (affect regression only). sr_norm
    standardises SR over the batch (batch norm without affine parameters; running statistics
    in eval mode and for a training batch of one), an addition to the paper for features
    whose dimensions spread on very different scales, such as those of a randomly
    initialised SSL model. implementation: "fused" pools the batch at once (:meth:`pool`),
    "reference" one utterance at a time (:meth:`pool_loop`). pooling: one of
    :data:`POOLINGS` (SR = [GAP, SAP], GAP alone, SAP alone)."""

    def __init__(self, input_dim: int, num_classes: int, *, heads: int = 8,
                 proj_dim: int = 32, dropout: float = 0.1, attention_dropout: float = 0.0,
                 affect_dims: int = 2, sr_norm: bool = False,
                 implementation: str = "fused", pooling: str = "gap+sap") -> None:
        super().__init__()
        if input_dim % heads:
            raise ValueError(f"SAPHead: heads ({heads}) must divide input_dim ({input_dim})")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"SAPHead: implementation must be one of {IMPLEMENTATIONS}, got "
                             f"{implementation!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"SAPHead: pooling must be one of {POOLINGS}, got {pooling!r}")
        self.implementation, self.pooling = implementation, pooling
        self.attention = nn.MultiheadAttention(input_dim, heads, dropout=attention_dropout,
                                               batch_first=True)
        width = 2 * input_dim if pooling == "gap+sap" else input_dim
        self.sr_norm = nn.BatchNorm1d(width, affine=False) if sr_norm else None
        self.projection = nn.Sequential(nn.Linear(width, proj_dim), nn.ReLU(),
                                        nn.Dropout(dropout))
        self.classifier = nn.Linear(proj_dim, num_classes)
        self.regressor = nn.Linear(proj_dim, affect_dims)

    def forward(self, features: Tensor, lengths: Tensor, speech: Tensor) -> SAPOutput:
        sr, fallback = self.pooled(features, lengths, speech)
        hidden = self.projection(sr)
        return SAPOutput(self.classifier(hidden), self.regressor(hidden), fallback)

    def pooled(self, features: Tensor, lengths: Tensor, speech: Tensor) -> Tuple[Tensor, Tensor]:
        """SR (B, 2D or D), standardised, the representation the projection reads, and
        fallback (B,)."""
        check_inputs(features, lengths, speech)
        if self.pooling == "gap":
            _, sr, _, fallback = global_average(features, lengths, speech)
        else:
            if self.implementation == "reference":
                gap, sap, fallback = self.pool_loop(features, lengths, speech)
            else:
                gap, sap, fallback = self.pool(features, lengths, speech)
            sr = torch.cat([gap, sap], dim=1) if self.pooling == "gap+sap" else sap
        return self.standardise(sr), fallback

    def standardise(self, sr: Tensor) -> Tensor:
        """SR (B, 2D or D), standardised when sr_norm is on."""
        norm = self.sr_norm
        if norm is None:
            return sr
        batch_statistics = self.training and sr.shape[0] > 1
        return F.batch_norm(sr, norm.running_mean, norm.running_var, None, None,
                            batch_statistics, 0.1, norm.eps)

    def pool(self, features: Tensor, lengths: Tensor,
             speech: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(GAP (B, D), SAP (B, D), fallback (B,)), batched."""
        if tracing():  # torch.export: no data-dependent sizes, so the masked form (same values)
            return self.pool_masked(features, lengths, speech)
        features, gap, speech, fallback = global_average(features, lengths, speech)
        zero = torch.zeros((), dtype=features.dtype, device=features.device)
        counts = speech.sum(dim=1)
        longest = int(counts.max())
        # speech frames first, in time order; the rest masked out of the attention
        order = torch.sort((~speech).to(torch.uint8), dim=1, stable=True)[1][:, :longest]
        keep = torch.arange(longest, device=speech.device) < counts.unsqueeze(1)
        packed = features.gather(1, order.unsqueeze(2).expand(-1, -1, features.shape[2]))
        packed = torch.where(keep.unsqueeze(2), packed, zero)
        attended = self.attention(packed, packed, packed, key_padding_mask=~keep,
                                  need_weights=False)[0]
        attended = torch.where(keep.unsqueeze(2), attended, zero)
        sap = attended.sum(dim=1) / counts.unsqueeze(1).to(features.dtype)
        return gap, sap, fallback

    def pool_masked(self, features: Tensor, lengths: Tensor,
                    speech: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """:meth:`pool` as usually vectorised: attention over all F frames with non-speech
        and padded keys masked out (a baseline: F >= S_max frames of queries and keys)."""
        features, gap, speech, fallback = global_average(features, lengths, speech)
        zero = torch.zeros((), dtype=features.dtype, device=features.device)
        attended = self.attention(features, features, features, key_padding_mask=~speech,
                                  need_weights=False)[0]
        attended = torch.where(speech.unsqueeze(2), attended, zero)
        sap = attended.sum(dim=1) / speech.sum(dim=1, keepdim=True).to(features.dtype)
        return gap, sap, fallback

    def pool_loop(self, features: Tensor, lengths: Tensor,
                  speech: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """:meth:`pool` one utterance at a time (the reference implementation)."""
        gaps: List[Tensor] = []
        saps: List[Tensor] = []
        fallbacks: List[bool] = []
        for b in range(features.shape[0]):
            n = int(lengths[b])
            frames = features[b, :n]
            mask = speech[b, :n]
            fallbacks.append(not bool(mask.any()))
            selected = frames if fallbacks[-1] else frames[mask]
            selected = selected.unsqueeze(0)
            attended = self.attention(selected, selected, selected, need_weights=False)[0]
            gaps.append(frames.mean(dim=0))
            saps.append(attended[0].mean(dim=0))
        fallback = torch.tensor(fallbacks, dtype=torch.bool, device=features.device)
        return torch.stack(gaps), torch.stack(saps), fallback


class SAPModel(nn.Module):
    """The trained SAP model: SSL layer outputs (or waveforms) -> SAPOutput.

    Without a front end, inputs are SSL layer outputs (B, F, L, D) or (B, F, D) (computed once
    and cached) and ``combine`` (a learned weighted layer sum, or identity) reduces them to
    features. With a front end (fine-tuning), inputs are padded waveforms (B, N) with sample
    lengths, and ``front_end(waveforms, lengths) -> (features, frame lengths)``."""

    def __init__(self, head: SAPHead, combine: Optional[nn.Module] = None,
                 front_end: Optional[nn.Module] = None) -> None:
        super().__init__()
        if front_end is not None and combine is not None:
            raise ValueError("SAPModel: a front end combines its own layers; pass no combine")
        self.head = head
        self.combine = combine if combine is not None else nn.Identity()
        self.front_end = front_end

    def forward(self, inputs: Tensor, lengths: Tensor, speech: Tensor) -> SAPOutput:
        return self.head(*self.features(inputs, lengths, speech))

    def features(self, inputs: Tensor, lengths: Tensor,
                 speech: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The head's inputs: features (B, F, D), frame lengths (B,) and the speech mask."""
        if self.front_end is not None:
            features, lengths = self.front_end(inputs, lengths)
        else:
            features = self.combine(inputs)
        return features, lengths, speech

    def embed(self, inputs: Tensor, lengths: Tensor, speech: Tensor) -> Tensor:
        """SR = [GAP, SAP] (B, 2D), the pooled representation the head's projection reads."""
        return self.head.pooled(*self.features(inputs, lengths, speech))[0]

    def classifier(self) -> "SAPClassifier":
        """The scriptable inference module over SSL layer outputs."""
        if self.front_end is not None:
            raise ValueError(
                "SAP: a model with a fine-tuned SSL front end cannot be exported to "
                "TorchScript (transformers' SSL models do not script); train with a frozen "
                "front end, whose head over cached SSL features exports")
        return SAPClassifier(self.combine, self.head)


class SAPClassifier(nn.Module):
    """Inference: SSL layer outputs (B, F, L, D) or (B, F, D), frame lengths (B,) int64,
    speech mask (B, F) bool -> class probabilities (B, C). TorchScript-scriptable."""

    def __init__(self, combine: nn.Module, head: SAPHead) -> None:
        super().__init__()
        self.combine, self.head = combine, head

    def forward(self, layers: Tensor, lengths: Tensor, speech: Tensor) -> Tensor:
        return torch.softmax(self.head(self.combine(layers), lengths, speech).logits, dim=1)
