"""Feature standardisation, the one implementation every recipe uses: global (the training
set's per-coefficient statistics, learnt once and stored with the model) and per speaker (each
speaker's frames standardised with that speaker's own statistics; it needs no labels, so held-out
test speakers are normalised the same way as training speakers, and a lone recording is its own
speaker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor


def frame_statistics(frames: Sequence[Tensor | np.ndarray]) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation (floored at 1e-5; 1 for a single frame) over the frames of
    every tensor or array (T_i, *feature_shape) together -> two float32 tensors
    (*feature_shape). Two passes in float64, one utterance at a time (memory-mapped SSL
    features are never all in memory)."""
    count, total = 0, None
    for f in frames:
        part = _float64(f)
        count += part.shape[0]
        total = part.sum(0) if total is None else total + part.sum(0)
    mean = total / count
    if count < 2:
        return mean.float(), torch.ones_like(mean).float()
    squares = sum((_float64(f) - mean).square().sum(0) for f in frames)
    return mean.float(), (squares / (count - 1)).sqrt().clamp_min(1e-5).float()


def _float64(frames: Tensor | np.ndarray) -> Tensor:
    if isinstance(frames, np.ndarray):
        return torch.from_numpy(np.asarray(frames, dtype=np.float64))
    return frames.double()


def standardise_by_speaker(frames: Sequence[Tensor], speakers: Sequence[str]) -> list[Tensor]:
    """Frames (T_i, *feature_shape) of utterances with their speakers -> the frames
    standardised with their speaker's statistics, float32, in the same order."""
    if len(frames) != len(speakers):
        raise ValueError(f"standardise_by_speaker: {len(frames)} utterances but "
                         f"{len(speakers)} speakers")
    groups: dict[str, list[int]] = {}
    for index, speaker in enumerate(speakers):
        groups.setdefault(speaker, []).append(index)
    out: list[Tensor] = [torch.empty(0)] * len(frames)
    for indices in groups.values():
        mean, std = frame_statistics([frames[i] for i in indices])
        for i in indices:
            out[i] = (frames[i].float() - mean) / std
    return out


def typical_speaker(frames: Sequence[Tensor], speakers: Sequence[str]) -> "FeatureStats":
    """The statistics of a typical speaker of ``frames`` (T_i, *feature_shape) with their
    ``speakers``: the mean of the speakers' means and the root mean of their variances. For
    features that give a recording no statistics of its own (one vector per utterance), a
    lone recording is standardised with these."""
    groups: dict[str, list[int]] = {}
    for index, speaker in enumerate(speakers):
        groups.setdefault(speaker, []).append(index)
    stats = [frame_statistics([frames[i] for i in indices]) for indices in groups.values()]
    mean = torch.stack([m for m, _ in stats]).mean(0)
    std = torch.stack([s for _, s in stats]).double().pow(2).mean(0).sqrt().float()
    return FeatureStats(mean, std)


@dataclass
class FeatureStats:
    """Per-coefficient mean and standard deviation (*feature_shape) of the training frames."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, frames: Sequence[Tensor | np.ndarray]) -> "FeatureStats":
        """The statistics of every frame of ``frames`` (T_i, *feature_shape) together."""
        return cls(*frame_statistics(frames))

    def apply(self, frames: Tensor) -> Tensor:
        """(T, *feature_shape) frames standardised."""
        return (frames - self.mean) / self.std

    def state(self) -> dict[str, Tensor]:
        return {"feature_mean": self.mean, "feature_std": self.std}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "FeatureStats | None":
        """The statistics :meth:`state` stored, or None when ``state`` holds none."""
        if "feature_mean" not in state:
            return None
        return cls(state["feature_mean"], state["feature_std"])
