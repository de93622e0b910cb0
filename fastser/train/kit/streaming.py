"""A live-audio front end for methods that featurise each fixed window of samples on its own
(the windows of :func:`fastser.audio.segmentation.fixed_windows`): the stream's samples are
kept from the next window's start on, and every window is featurised as soon as its last
sample arrives, exactly as offline prediction featurises it."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from fastser.train.recipe import StreamingFeatures

#: (windows (S, window) zero-padded, lengths (S,) int64) -> features (S, ...)
WindowFeaturiser = Callable[[Tensor, Tensor], Tensor]


class FixedWindowStream(StreamingFeatures):
    """Segment k spans samples ``[k * hop, k * hop + window)``; the tail after the last
    window is dropped and a recording shorter than one window is one zero-padded window of
    its length, as offline.  Memory: less than one window of samples, plus the chunk being
    processed."""

    def __init__(self, window: int, hop: int, featurise: WindowFeaturiser) -> None:
        if not 1 <= hop <= window:
            raise ValueError(f"FixedWindowStream: need 1 <= hop <= window, got hop {hop}, "
                             f"window {window}")
        self.window, self.hop, self.featurise = window, hop, featurise
        self.reset()

    def reset(self) -> None:
        self._samples = torch.zeros(0)  # the stream from sample ``_first`` on
        self._first = 0
        self._windows_done = 0

    def push(self, samples: Tensor) -> list[Tensor]:
        self._samples = torch.cat([self._samples, samples])
        received = self._first + self._samples.shape[0]
        starts = []
        while self._windows_done * self.hop + self.window <= received:
            starts.append(self._windows_done * self.hop - self._first)
            self._windows_done += 1
        if not starts:
            return []
        windows = torch.stack([self._samples[s:s + self.window] for s in starts])
        next_start = self._windows_done * self.hop
        self._samples = self._samples[next_start - self._first:]
        self._first = next_start
        lengths = torch.full((len(starts),), self.window, dtype=torch.long)
        return list(self._features(windows, lengths))

    def finish(self, num_samples: int) -> list[Tensor]:
        if self._windows_done:
            return []
        padded = torch.nn.functional.pad(self._samples, (0, self.window - num_samples))
        return list(self._features(padded[None], torch.tensor([num_samples])))

    def _features(self, windows: Tensor, lengths: Tensor) -> Tensor:
        with torch.no_grad():
            return self.featurise(windows, lengths)

    def state(self) -> dict[str, int]:
        return {"buffered_samples": self._samples.shape[0]}
