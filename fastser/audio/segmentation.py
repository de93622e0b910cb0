"""Cutting ragged batches of utterances into packed segments (GLRF windows, MMTL pieces).

Both cutters take a list of 1-D waveforms, or a padded (B, N) batch with int64 lengths (B,),
and return :class:`Segments`: the segments of all utterances back to back, utterance by
utterance in time order, as (S, window) zero-padded rows, with per-utterance counts (B,) that
sum to S.

Fixed windows (GLRF; :func:`window_starts`): for an utterance of N samples, windows of W
samples start at 0, H, 2H, ... while start + W <= N, i.e. ``1 + (N - W) // H`` windows. The
tail after the last window is always shorter than H samples and belongs to no window of its
own (it is dropped, apart from the part the earlier windows overlap). This is exactly what a
streaming recogniser sees when it emits window k as soon as k*H + W samples have arrived.
An utterance shorter than W gives one window at 0, zero-padded.

Equal pieces (MMTL; :func:`piece_bounds`): m = ceil(N / W) pieces, piece i spanning samples
``[floor(i*N/m), floor((i+1)*N/m))``; pieces differ in length by at most one sample and none is
longer than W. Each is zero-padded to W.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from fastser.audio._batch import WaveformBatch, as_padded
from fastser.audio.io import SAMPLE_RATE


class Segments(NamedTuple):
    """Packed segments: ``segments`` (S, window) float, zero past each segment's length;
    ``counts`` (B,) int64 segments per utterance; ``starts`` (S,) int64 first sample of each
    segment in its utterance; ``lengths`` (S,) int64 real (unpadded) samples per segment."""

    segments: Tensor
    counts: Tensor
    starts: Tensor
    lengths: Tensor


def seconds_to_samples(seconds: float, sample_rate: int, name: str) -> int:
    """round(seconds * sample_rate); ValueError unless it is at least one sample."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    samples = round(seconds * sample_rate)
    if not samples >= 1:
        raise ValueError(f"{name} must be positive (at least one sample at {sample_rate} Hz), "
                         f"got {seconds} s")
    return int(samples)


def _check_window(window: int, hop: int) -> None:
    if window < 1:
        raise ValueError(f"window must be at least 1 sample, got {window}")
    if hop < 1:
        raise ValueError(f"hop must be at least 1 sample, got {hop}")
    if hop > window:
        raise ValueError(f"hop ({hop} samples) must not exceed the window ({window} samples): "
                         f"audio between windows would be skipped")


def num_windows(num_samples: Tensor | int, window: int, hop: int) -> Tensor | int:
    """Windows per utterance: 1 if N <= window, else 1 + (N - window) // hop (int or tensor)."""
    _check_window(window, hop)
    if isinstance(num_samples, Tensor):
        return torch.div((num_samples - window).clamp(min=0), hop, rounding_mode="floor") + 1
    if num_samples < 1:
        raise ValueError(f"empty audio: {num_samples} samples")
    return max(0, num_samples - window) // hop + 1


def window_starts(num_samples: int, window: int, hop: int) -> Tensor:
    """int64 start samples of the fixed windows of an utterance of ``num_samples`` samples."""
    return torch.arange(num_windows(num_samples, window, hop), dtype=torch.long) * hop


def piece_bounds(num_samples: int, max_piece: int) -> Tensor:
    """int64 (m + 1,) boundaries floor(i * N / m), i = 0..m, with m = ceil(N / max_piece)."""
    if max_piece < 1:
        raise ValueError(f"max_piece must be at least 1 sample, got {max_piece}")
    if num_samples < 1:
        raise ValueError(f"empty audio: {num_samples} samples")
    pieces = -(-num_samples // max_piece)
    return torch.arange(pieces + 1, dtype=torch.long) * num_samples // pieces


def _owner_and_index(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For S = counts.sum() packed segments: the utterance of each (S,) and its index within
    that utterance (S,)."""
    owner = torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    return owner, torch.arange(owner.shape[0], device=counts.device) - first[owner]


def _gather(padded: Tensor, owner: Tensor, starts: Tensor, seg_lengths: Tensor,
            window: int) -> Tensor:
    """(S, window) rows padded[owner, start : start + length], zero past length: one row
    gather from the view of every window start of the flattened batch."""
    flat = torch.nn.functional.pad(padded.reshape(-1), (0, window))
    every_start = flat.unfold(0, window, 1)  # (B*N + 1, window) view, no copy
    rows = every_start[owner * padded.shape[1] + starts]
    inside = torch.arange(window, device=padded.device) < seg_lengths[:, None]
    return rows.masked_fill(~inside, 0.0)


def fixed_windows(batch: WaveformBatch, lengths: Tensor | None = None, *, window: float = 2.0,
                  hop: float = 0.2, sample_rate: int = SAMPLE_RATE) -> Segments:
    """GLRF windows of ``window`` s every ``hop`` s (0.2 s in training, 0.4 s in testing).

    Returns packed :class:`Segments` with rows of round(window * sample_rate) samples."""
    window_samples = seconds_to_samples(window, sample_rate, "window")
    hop_samples = seconds_to_samples(hop, sample_rate, "hop")
    _check_window(window_samples, hop_samples)
    padded, lengths = as_padded(batch, lengths)
    counts = num_windows(lengths, window_samples, hop_samples)
    owner, index = _owner_and_index(counts)
    starts = index * hop_samples
    seg_lengths = (lengths[owner] - starts).clamp(max=window_samples)
    if padded.shape[1] < window_samples:
        padded = torch.nn.functional.pad(padded, (0, window_samples - padded.shape[1]))
    # windows are rows of a strided view; only the single window of an utterance shorter
    # than one window can reach past its length (into padding, which is zeroed)
    segments = padded.unfold(1, window_samples, hop_samples)[owner, index]
    if bool((lengths < window_samples).any()):
        inside = torch.arange(window_samples, device=padded.device) < seg_lengths[:, None]
        segments = segments.masked_fill(~inside, 0.0)
    return Segments(segments, counts, starts, seg_lengths)


def equal_pieces(batch: WaveformBatch, lengths: Tensor | None = None, *, max_duration: float = 3.0,
                 sample_rate: int = SAMPLE_RATE) -> Segments:
    """MMTL pieces: each utterance cut into ceil(duration / max_duration) equal pieces, each
    zero-padded to round(max_duration * sample_rate) samples, packed as :class:`Segments`."""
    max_samples = seconds_to_samples(max_duration, sample_rate, "max_duration")
    padded, lengths = as_padded(batch, lengths)
    counts = torch.div(lengths + max_samples - 1, max_samples, rounding_mode="floor")
    owner, index = _owner_and_index(counts)
    total, pieces = lengths[owner], counts[owner]
    starts = index * total // pieces
    seg_lengths = (index + 1) * total // pieces - starts
    segments = _gather(padded, owner, starts, seg_lengths, max_samples)
    return Segments(segments, counts, starts, seg_lengths)
