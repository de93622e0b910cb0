"""GLRF's live-audio front end: the MFCC frames of the stream, computed incrementally as their
25 ms of samples arrive, kept in a ring buffer one window long; every completed 2 s window
(one per test hop) is handed to the scorer.

Frames are computed in calls of at least ``MIN_FRAMES_PER_CALL`` frames (recomputing a few
earlier ones when a chunk completes fewer), so every call has the shape offline featurisation
has, and the streamed windows are exactly the offline ones. Memory is bounded: one window of
frames and fewer than ``MIN_FRAMES_PER_CALL`` frames of samples, plus the chunk being
processed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fastser.train.recipe import StreamingFeatures

if TYPE_CHECKING:
    from fastser.methods.glrf.recipe import GLRFRecipe

#: Fewest MFCC frames computed per call: BLAS kernels may round a 1- or 2-row product
#: differently from a long one, and offline featurisation computes many frames per call.
MIN_FRAMES_PER_CALL = 8


class FrameRing:
    """The last ``capacity`` MFCC frames (capacity, n_mfcc), oldest first by :meth:`window`."""

    def __init__(self, capacity: int, n_mfcc: int) -> None:
        self.rows = torch.zeros(capacity, n_mfcc)
        self.position = 0  # the next row written, i.e. the oldest row once full

    def write(self, frames: Tensor) -> None:
        capacity = self.rows.shape[0]
        if frames.shape[0] > capacity:
            raise AssertionError("a window's worth of frames at most is written at once")
        first = min(frames.shape[0], capacity - self.position)
        self.rows[self.position:self.position + first] = frames[:first]
        self.rows[:frames.shape[0] - first] = frames[first:]
        self.position = (self.position + frames.shape[0]) % capacity

    def window(self) -> Tensor:
        return torch.cat([self.rows[self.position:], self.rows[:self.position]])


class GLRFStreamingFeatures(StreamingFeatures):
    """The MFCC windows (window_frames, n_mfcc) of a stream, at the recipe's test hop."""

    def __init__(self, recipe: "GLRFRecipe") -> None:
        self.mfcc = recipe.mfcc
        self.frame_hop, self.frame_length = self.mfcc.hop_length, self.mfcc.n_fft
        self.window, self.hop = recipe.window_samples, recipe.test_hop_samples
        self.window_frames = recipe.window_frames
        self.hop_frames = self.hop // self.frame_hop
        self.reset()

    def reset(self) -> None:
        self._pending = torch.zeros(0)  # samples from sample ``_pending_start`` on
        self._pending_start = 0
        self._frames_done = 0
        self._windows_done = 0
        self._ring = FrameRing(self.window_frames, self.mfcc.n_mfcc)

    def push(self, samples: Tensor) -> list[Tensor]:
        """Append samples, compute the frames they complete and return every window whose
        samples have all arrived (window k ends at sample k*hop + window, frame
        k*hop_frames + window_frames - 1)."""
        self._pending = torch.cat([self._pending, samples])
        received = self._pending_start + self._pending.shape[0]
        first_new = self._frames_done
        new_frames = self._new_frames(received)
        windows, written = [], 0
        while self._windows_done * self.hop + self.window <= received:
            # the ring holds frames up to the window's last one: exactly the window
            end = self._windows_done * self.hop_frames + self.window_frames - first_new
            self._ring.write(new_frames[written:max(written, end)])
            written = max(written, end)
            windows.append(self._ring.window())
            self._windows_done += 1
        self._ring.write(new_frames[written:])
        return windows

    def finish(self, num_samples: int) -> list[Tensor]:
        """A recording shorter than one window is one zero-padded window (as offline); the
        tail after the last window is dropped."""
        if self._windows_done:
            return []
        return self.push(torch.zeros(self.window - num_samples))

    def state(self) -> dict[str, int]:
        return {"frames": self._frames_done}

    def _new_frames(self, received: int) -> Tensor:
        """MFCC frames completed by the samples received so far (n_new, n_mfcc)."""
        if received < self.frame_length:
            return torch.zeros(0, self.mfcc.n_mfcc)
        available = (received - self.frame_length) // self.frame_hop + 1
        if available == self._frames_done or available < MIN_FRAMES_PER_CALL:
            return torch.zeros(0, self.mfcc.n_mfcc)
        first = min(self._frames_done, available - MIN_FRAMES_PER_CALL)
        begin = first * self.frame_hop - self._pending_start
        end = (available - 1) * self.frame_hop + self.frame_length - self._pending_start
        with torch.no_grad():
            frames = self.mfcc(self._pending[begin:end])[self._frames_done - first:]
        self._frames_done = available
        keep_from = max(0, available - MIN_FRAMES_PER_CALL + 1) * self.frame_hop
        self._pending = self._pending[keep_from - self._pending_start:]
        self._pending_start = keep_from
        return frames
