"""Word timings and aligned segmentation of audio at word boundaries (CAN).

:func:`aligned_segments` turns a forced alignment into one audio segment per word:

1. Marker tokens are dropped (case-insensitive; default :data:`MARKERS`: ``<s> </s> <sil>
   <sp> <eps> <pau> sil sp pau``). The words that remain must be sorted by start and may not
   overlap by more than ``tolerance`` seconds; otherwise it is an error (alignments come out
   sorted, so disorder means a bug upstream). Word times are checked against the audio:
   a word starting at or after its end, or ending more than ``tolerance`` past it, is an error.
2. The words then tile the audio: the boundary between neighbours is the midpoint between the
   first's end and the second's start (so a silence between them is split at its midpoint),
   the first word starts at 0 (taking any leading silence) and the last ends at the audio's
   end (taking any trailing silence).
3. Overlap: with tiled durations d_i, each boundary between words i and i+1 is widened by
   ``overlap / 2 * (d_i + d_{i+1})`` on each side, so neighbours share ``overlap`` (10%) of
   their combined duration; segments are clipped to the audio.
4. Sample ranges: start and end are t * rate rounded to the nearest sample (so segments
   without overlap tile the audio exactly), with at least one sample each.

:func:`equal_segments` is the paper's ablation: as many equal pieces as words (boundaries at
i * N / W samples), widened the same way. :func:`word_frame_ranges` maps sample ranges onto the
frames of :class:`fastser.audio.features.MFCC` (a frame belongs to the word its centre falls in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from fastser.audio.io import SAMPLE_RATE
from fastser.errors import CorpusError

MARKERS = frozenset({"<s>", "</s>", "<sil>", "<sp>", "<eps>", "<pau>", "sil", "sp", "pau"})


@dataclass(frozen=True)
class WordTiming:
    """One word of a transcript and where it is spoken, in seconds from the utterance start."""

    word: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.word:
            raise CorpusError("WordTiming: word must be a non-empty string")
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise CorpusError(f"WordTiming {self.word!r}: start and end must be finite, "
                             f"got {self.start}, {self.end}")
        if self.start < 0 or self.end < self.start:
            raise CorpusError(f"WordTiming {self.word!r}: needs 0 <= start <= end, "
                             f"got start={self.start}, end={self.end}")

    @property
    def duration(self) -> float:
        return self.end - self.start


class WordSegments(NamedTuple):
    """One segment per kept word: ``words`` (W,) strings, ``starts`` and ``ends`` int64 (W,)
    sample ranges [start, end) in the utterance."""

    words: list[str]
    starts: Tensor
    ends: Tensor


def _check_overlap(overlap: float) -> None:
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")


def _widened_ranges(bounds: Tensor, overlap: float, num_samples: int) -> tuple[Tensor, Tensor]:
    """float64 (W + 1,) tiling boundaries in samples -> int64 (starts, ends) widened by
    overlap / 2 * (d_i + d_{i+1}) around each inner boundary, rounded to the nearest sample,
    clipped, non-empty."""
    durations = bounds[1:] - bounds[:-1]
    reach = overlap / 2.0 * (durations[:-1] + durations[1:])  # (W - 1,) per inner boundary
    starts, ends = bounds[:-1].clone(), bounds[1:].clone()
    starts[1:] -= reach
    ends[:-1] += reach
    starts = torch.round(starts).clamp(0, num_samples - 1).to(torch.long)
    ends = torch.round(ends).clamp(0, num_samples).to(torch.long)
    return starts, torch.maximum(ends, starts + 1)


def _kept_words(words: Sequence[WordTiming], markers: frozenset[str]) -> list[WordTiming]:
    folded = {m.casefold() for m in markers}
    kept = []
    for index, word in enumerate(words):
        if not isinstance(word, WordTiming):
            raise TypeError(f"words[{index}]: expected a WordTiming, got {type(word).__name__}")
        if word.word.casefold() not in folded:
            kept.append(word)
    if not kept:
        raise CorpusError(f"empty transcript: no words left after dropping the markers "
                         f"{sorted(markers)} from {len(words)} token(s)")
    return kept


def aligned_segments(words: Sequence[WordTiming], num_samples: int, sample_rate: int = SAMPLE_RATE,
                     *, overlap: float = 0.1, markers: frozenset[str] = MARKERS,
                     tolerance: float = 0.02) -> WordSegments:
    """Per-word sample ranges of an utterance of ``num_samples`` samples from its word
    timings, by the rules in the module docstring."""
    _check_overlap(overlap)
    if num_samples < 1 or sample_rate < 1:
        raise ValueError(f"need num_samples >= 1 and sample_rate >= 1, got {num_samples}, "
                         f"{sample_rate}")
    kept = _kept_words(words, markers)
    duration = num_samples / sample_rate
    for word in kept:
        if word.start >= duration:
            raise CorpusError(f"word {word.word!r} starts at {word.start} s, at or after the end "
                             f"of the audio ({duration:.3f} s)")
        if word.end > duration + tolerance:
            raise CorpusError(f"word {word.word!r} ends at {word.end} s, more than {tolerance} s "
                             f"past the end of the audio ({duration:.3f} s)")
    for first, second in zip(kept, kept[1:]):
        if second.start < first.start:
            raise CorpusError(f"words are not sorted: {second.word!r} (start {second.start} s) "
                             f"comes after {first.word!r} (start {first.start} s)")
        if second.start < first.end - tolerance:
            raise CorpusError(f"words overlap: {first.word!r} ends at {first.end} s but "
                             f"{second.word!r} starts at {second.start} s (tolerance "
                             f"{tolerance} s)")
    inner = [(a.end + b.start) / 2.0 for a, b in zip(kept, kept[1:])]
    bounds = torch.tensor([0.0, *inner, duration], dtype=torch.float64) * sample_rate
    starts, ends = _widened_ranges(bounds, overlap, num_samples)
    return WordSegments([w.word for w in kept], starts, ends)


def equal_segments(num_words: int, num_samples: int, *, overlap: float = 0.1) -> tuple[Tensor,
                                                                                         Tensor]:
    """Ablation: ``num_words`` equal pieces of the utterance (boundaries i * N / W), widened
    like :func:`aligned_segments`. Returns int64 (starts, ends), each (num_words,)."""
    _check_overlap(overlap)
    if num_words < 1:
        raise CorpusError(f"empty transcript: need at least one word, got {num_words}")
    if num_samples < num_words:
        raise CorpusError(f"cannot cut {num_samples} samples into {num_words} non-empty pieces")
    bounds = torch.arange(num_words + 1, dtype=torch.float64) * (num_samples / num_words)
    return _widened_ranges(bounds, overlap, num_samples)


def word_frame_ranges(starts: Tensor, ends: Tensor, num_samples: int, *, n_fft: int = 400,
                      hop_length: int = 160) -> tuple[Tensor, Tensor]:
    """Frame ranges [first, last) of each sample range on MFCC frames of the whole utterance
    (frame t covers [t * hop, t * hop + n_fft), centre t * hop + n_fft / 2; defaults match
    :class:`~fastser.audio.features.MFCC`). A frame belongs to a range when its centre lies in
    [start, end); a range holding no centre gets the one frame nearest its middle. Frames are
    clipped to the utterance's num_frames = (N - n_fft) // hop + 1."""
    if num_samples < n_fft:
        raise ValueError(f"{num_samples} samples is shorter than one frame ({n_fft} samples)")
    total = (num_samples - n_fft) // hop_length + 1
    first = _ceil_div(2 * starts - n_fft, 2 * hop_length).clamp(0, total - 1)
    last = _ceil_div(2 * ends - n_fft, 2 * hop_length).clamp(0, total)
    nearest = torch.div(starts + ends - n_fft + hop_length, 2 * hop_length,
                        rounding_mode="floor").clamp(0, total - 1)
    empty = last <= first
    first = torch.where(empty, nearest, first)
    return first, torch.where(empty, nearest + 1, last)


def _ceil_div(numerator: Tensor, denominator: int) -> Tensor:
    return -torch.div(-numerator, denominator, rounding_mode="floor")
