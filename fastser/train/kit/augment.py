"""Training-data augmentation, the one implementation every gradient-trained method uses.

Two kinds, both training-only and deterministic per seed:

- Augmented copies (``speed_perturb``, ``noise_snr``): extra versions of every training
  utterance made from its waveform when the corpus is featurised (items are featurised once
  per corpus, so the copies are too): Kaldi-style speed perturbation (resampling: tempo and
  pitch change together; word timings scale with it) and white noise at an SNR drawn per
  utterance. Each epoch, a training utterance is drawn uniformly from its original and its
  copies. With ``speaker_norm``, each kind of copy is standardised per speaker on its own (a
  speed-perturbed speaker is a new voice).
- SpecAugment-style masks (``time_masks``, ``feature_masks``) on an item's feature frames
  (the frames ``Recipe.item_features`` gives, after any per-speaker standardisation), drawn
  anew for every item in every epoch: masked frames and coefficients take the item's mean
  over time.

:class:`TrainingItems` is the training set as one epoch sees it: item ``i`` of epoch ``e`` is
drawn from a generator seeded by (seed, e, i) alone, so the order in which a sampler reads
items, the number of processes and resumption after a kill change nothing.

Methods declare the settings by deriving their settings from :class:`AugmentSettings`.
"""

from __future__ import annotations

import dataclasses
import operator
import zlib
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE, resample
from fastser.data.corpus import Utterance
from fastser.errors import SettingsError
from fastser.train.kit.settings import Settings, setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentSettings(Settings):
    """The augmentation settings of a method (all off by default)."""

    speed_perturb: tuple[float, ...] = setting(
        (), "speed factors of extra training copies of every training utterance, e.g. "
        "[0.9, 1.1] (resampled: tempo and pitch change together); each epoch an utterance is "
        "drawn from its original and its copies", low=0.5, high=2.0)
    noise_snr: tuple[float, float] | None = setting(
        None, "[low, high] dB: one extra training copy of every training utterance with white "
        "noise at an SNR drawn uniformly from the range (null: none)")
    time_masks: int = setting(0, "SpecAugment: masks of consecutive frames per training item "
                              "and epoch (masked frames take the item's mean frame)", low=0)
    time_mask_width: float = setting(0.1, "longest time mask, as a fraction of the item's "
                                     "frames", low=0.0, high=1.0, low_open=True)
    feature_masks: int = setting(0, "SpecAugment: masks of adjacent feature coefficients per "
                                 "training item and epoch (masked coefficients take their mean "
                                 "over the item)", low=0)
    feature_mask_width: int = setting(4, "most adjacent coefficients one feature mask covers",
                                      low=1)

    def check(self, method: str) -> None:
        super().check(method)
        if self.noise_snr is not None and self.noise_snr[0] > self.noise_snr[1]:
            raise SettingsError(f"{method}: setting noise_snr must be [low, high] dB with low "
                                f"<= high, got {list(self.noise_snr)}")
        if len(set(self.speed_perturb)) != len(self.speed_perturb) or 1.0 in self.speed_perturb:
            raise SettingsError(f"{method}: setting speed_perturb must hold distinct factors "
                                f"other than 1 (the original), got {list(self.speed_perturb)}")


def speed_perturb(waveform: Tensor, factor: float) -> Tensor:
    """A 16 kHz waveform (N,) played ``factor`` times faster: about N / factor samples, pitch
    scaled by ``factor`` (resampled as if recorded at factor x 16 kHz)."""
    return resample(waveform, round(SAMPLE_RATE * factor), SAMPLE_RATE)


def add_noise(waveform: Tensor, snr_db: float, generator: torch.Generator) -> Tensor:
    """``waveform`` (N,) plus white Gaussian noise ``snr_db`` dB below its mean power."""
    power = waveform.double().pow(2).mean().clamp_min(1e-12)
    noise = torch.randn(waveform.shape, generator=generator, dtype=torch.float64)
    noise *= torch.sqrt(power / 10 ** (snr_db / 10) / noise.pow(2).mean())
    return (waveform.double() + noise).float()


def speed_utterance(utterance: Utterance, factor: float) -> Utterance:
    """``utterance`` with its times (word timings, emotion span, duration) for audio played
    ``factor`` times faster."""
    span = utterance.emotion_span
    return dataclasses.replace(
        utterance,
        words=tuple(WordTiming(w.word, w.start / factor, w.end / factor)
                    for w in utterance.words),
        emotion_span=None if span is None else (span[0] / factor, span[1] / factor),
        duration=None if utterance.duration is None else utterance.duration / factor)


def mask_frames(frames: Tensor, generator: torch.Generator, *, time_masks: int,
                time_width: float, feature_masks: int, feature_width: int) -> Tensor:
    """SpecAugment-style masks on an item's frames (T, *feature_shape), a new tensor: up to
    ``time_masks`` runs of at most ``time_width`` x T frames set to the mean frame, and up to
    ``feature_masks`` runs of at most ``feature_width`` coefficients of the last dimension set
    to their mean over time (a drawn width may be 0)."""
    out = frames.clone()
    mean = frames.float().mean(dim=0).to(frames.dtype)
    num_frames, dim = frames.shape[0], frames.shape[-1]

    def run(total: int, widest: int) -> tuple[int, int]:
        width = int(torch.randint(0, min(widest, total) + 1, (1,), generator=generator))
        start = int(torch.randint(0, total - width + 1, (1,), generator=generator))
        return start, width

    for _ in range(time_masks):
        start, width = run(num_frames, max(1, int(time_width * num_frames)))
        out[start:start + width] = mean
    for _ in range(feature_masks):
        start, width = run(dim, feature_width)
        out[..., start:start + width] = mean[..., start:start + width]
    return out


def utterance_seed(utterance_id: str) -> int:
    """A seed that depends on the utterance's id alone (the same in every process, fold and
    order)."""
    return zlib.crc32(utterance_id.encode())


class Augmentation:
    """What a method's :class:`AugmentSettings` ask for, applied."""

    def __init__(self, settings: AugmentSettings) -> None:
        self.settings = settings

    @property
    def makes_copies(self) -> bool:
        return bool(self.settings.speed_perturb) or self.settings.noise_snr is not None

    @property
    def masks(self) -> bool:
        return self.settings.time_masks > 0 or self.settings.feature_masks > 0

    def copies(self, waveform: Tensor, utterance: Utterance) -> list[tuple[str, Tensor,
                                                                         Utterance]]:
        """(kind, waveform, utterance) of each augmented copy of a 16 kHz waveform (N,)."""
        s = self.settings
        out = [(f"speed {factor:g}", speed_perturb(waveform, factor),
                speed_utterance(utterance, factor)) for factor in s.speed_perturb]
        if s.noise_snr is not None:
            generator = torch.Generator().manual_seed(utterance_seed(utterance.id))
            low, high = s.noise_snr
            snr = low + (high - low) * float(torch.rand((), generator=generator,
                                                        dtype=torch.float64))
            out.append(("noise", add_noise(waveform, snr, generator), utterance))
        return out

    def mask(self, frames: Tensor, generator: torch.Generator) -> Tensor:
        s = self.settings
        return mask_frames(frames, generator, time_masks=s.time_masks,
                           time_width=s.time_mask_width, feature_masks=s.feature_masks,
                           feature_width=s.feature_mask_width)


class TrainingItems(Sequence):
    """The training items as epoch ``set_epoch(e)`` sees them: item i is drawn uniformly from
    ``items[i]`` and its ``copies[i]``, then masked (``augmentation.masks``) through
    ``features`` / ``with_features`` (the recipe's item_features / with_features), all from a
    generator seeded by (seed, e, i). Without augmentation, ``items[i]`` itself."""

    def __init__(self, items: Sequence[Any], copies: Sequence[Sequence[Any]] | None, *,
                 seed: int, augmentation: Augmentation | None,
                 features: Callable[[Any], Tensor], with_features: Callable[[Any, Tensor], Any]
                 ) -> None:
        if copies is not None and len(copies) != len(items):
            raise ValueError(f"TrainingItems: {len(copies)} copy lists for {len(items)} items")
        self.items, self.copies, self.seed = items, copies, seed
        self.masks = augmentation is not None and augmentation.masks
        self.augmentation = augmentation
        self.features, self.with_features = features, with_features
        self.augmented = self.masks or (copies is not None and any(copies))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = operator.index(index)
        item = self.items[index]
        if not self.augmented:
            return item
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index % len(self)])
                   .generate_state(1, np.uint64)[0] >> 1)
        generator = torch.Generator().manual_seed(seed)
        copies = self.copies[index] if self.copies is not None else ()
        if copies:
            choice = int(torch.randint(len(copies) + 1, (1,), generator=generator))
            item = item if choice == 0 else copies[choice - 1]
        if self.masks:
            item = self.with_features(item, self.augmentation.mask(self.features(item),
                                                                   generator))
        return item
