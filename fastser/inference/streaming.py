"""Streaming emotion recognition with a trained GLRF model.

:class:`StreamingRecognizer` takes 16 kHz audio in chunks of any size (a 100 ms microphone
callback, single samples, several seconds at once) and emits a prediction for each new 2 s
segment as soon as its last sample has arrived, every 0.4 s (the recipe's test hop), together
with the running utterance prediction (the mean of the segment scores so far).  Its segments
are exactly those of offline prediction (``fastser.audio.segmentation.window_starts`` with the
test hop; a recording shorter than one window gives one zero-padded window when the stream is
finished; the tail after the last window is dropped), and so are its features: the MFCC frames
of the recording, computed incrementally as their 25 ms of samples arrive (in calls of at least
``MIN_FRAMES_PER_CALL`` frames, recomputing a few earlier ones when a chunk completes fewer, so
every call has the shape offline featurisation has), kept in a ring buffer one window long.
Hence streaming gives the offline segment and utterance scores (the same features; the model
then runs on one window, or the windows a chunk completes, instead of the whole recording).

    recognizer = StreamingRecognizer.from_checkpoint("runs/glrf/best.pt")  # TorchScript model
    for chunk in microphone_chunks():
        for segment in recognizer.push(chunk):
            print(segment.start, segment.label, segment.utterance_label)
    final = recognizer.finish()

Memory is bounded: one window of frames and fewer than ``MIN_FRAMES_PER_CALL`` frames of
samples, plus the chunk being processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fastser.audio.io import SAMPLE_RATE, validate_waveform
from fastser.inference.checkpoint import load_trained
from fastser.methods.glrf import GLRFRecipe

#: Fewest MFCC frames computed per call: BLAS kernels may round a 1- or 2-row product
#: differently from a long one, and offline featurisation computes many frames per call.
MIN_FRAMES_PER_CALL = 8


@dataclass
class SegmentPrediction:
    """One emitted segment: its index and span (seconds), its class scores (C,), and the
    running utterance scores (C,) over segments 0..index."""

    index: int
    start: float
    end: float
    probs: Tensor
    label: str
    utterance_probs: Tensor
    utterance_label: str


@dataclass
class UtterancePrediction:
    """The stream's result: utterance scores (C,), their label, and every segment."""

    probs: Tensor
    label: str
    segments: list[SegmentPrediction]


class _FrameRing:
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


class StreamingRecognizer:
    """Segment-by-segment GLRF recognition of a 16 kHz audio stream.

    ``recipe``: the trained model's :class:`GLRFRecipe` (MFCC settings, window, test hop,
    labels); ``scorer``: a module with ``segment_probs(segments (S, T, n_mfcc)) -> (S, C)``,
    i.e. the recipe's inference module, eager or scripted with TorchScript."""

    def __init__(self, recipe: GLRFRecipe, scorer: nn.Module, *,
                 device: str | torch.device = "cpu") -> None:
        if not isinstance(recipe, GLRFRecipe):
            raise ValueError(f"streaming recognition needs a GLRF recipe, got "
                             f"{type(recipe).__name__}")
        self.recipe, self.scorer, self.device = recipe, scorer, torch.device(device)
        self.mfcc = recipe.mfcc
        self.frame_hop, self.frame_length = self.mfcc.hop_length, self.mfcc.n_fft
        self.window, self.hop = recipe.window_samples, recipe.test_hop_samples
        self.window_frames = recipe.window_frames
        self.hop_frames = self.hop // self.frame_hop
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, script: bool = True,
                        device: str | torch.device = "cpu") -> "StreamingRecognizer":
        """A recogniser for a GLRF training checkpoint; ``script``: run the model scripted
        with TorchScript (the recipe's inference module)."""
        trained = load_trained(path, device=device)
        if not isinstance(trained.recipe, GLRFRecipe):
            raise ValueError(f"streaming recognition needs a GLRF checkpoint; {path} holds a "
                             f"{trained.recipe.name!r} model")
        scorer = trained.recipe.export_module(trained.model).eval()
        if script:
            scorer = torch.jit.script(scorer)
        return cls(trained.recipe, scorer, device=device)

    @property
    def labels(self) -> list[str]:
        return list(self.recipe.label_names)

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new recording."""
        self.num_samples = 0  # samples received
        self._pending = torch.zeros(0)  # samples from sample ``_pending_start`` on
        self._pending_start = 0
        self._frames_done = 0
        self._ring = _FrameRing(self.window_frames, self.mfcc.n_mfcc)
        self.segments: list[SegmentPrediction] = []
        self._score_sum: Tensor | None = None
        self._finished = False

    @property
    def utterance_probs(self) -> Tensor | None:
        """Running utterance scores (C,): the mean over the segments so far (None before the
        first segment)."""
        return None if not self.segments else self.segments[-1].utterance_probs

    # -- input ---------------------------------------------------------------------------------
    def push(self, chunk: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE
             ) -> list[SegmentPrediction]:
        """Add the next samples of the stream (mono (N,), or (channels, N) averaged; float, or
        int16/int32 PCM); returns the segments they complete (possibly none)."""
        if self._finished:
            raise RuntimeError("push: the stream is finished; call reset() to start a new one")
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"push: the stream must be {SAMPLE_RATE} Hz audio, got "
                             f"{sample_rate} Hz; resample the recording first")
        if getattr(chunk, "size", None) == 0 or (isinstance(chunk, Tensor) and chunk.numel() == 0):
            return []
        samples = validate_waveform(chunk, SAMPLE_RATE, SAMPLE_RATE, name="chunk",
                                    warn=False).cpu()
        self.num_samples += samples.shape[0]
        return self._consume(samples)

    def finish(self) -> UtterancePrediction:
        """End the stream: a recording shorter than one window is scored as one zero-padded
        window (as offline).  Returns the utterance prediction and every segment."""
        if self._finished:
            raise RuntimeError("finish: the stream is already finished; call reset()")
        if self.num_samples == 0:
            raise ValueError("finish: empty audio, no samples were pushed")
        if not self.segments:
            self._consume(torch.zeros(self.window - self.num_samples))
        self._finished = True
        probs = self.segments[-1].utterance_probs
        return UtterancePrediction(probs, self._label(probs), list(self.segments))

    # -- frames and windows --------------------------------------------------------------------
    def _consume(self, samples: Tensor) -> list[SegmentPrediction]:
        """Append samples, compute the frames they complete and score every window whose
        samples have all arrived (window k ends at sample k*hop + window, frame
        k*hop_frames + window_frames - 1)."""
        self._pending = torch.cat([self._pending, samples])
        received = self._pending_start + self._pending.shape[0]
        first_new = self._frames_done
        new_frames = self._new_frames(received)
        windows, written = [], 0
        index = len(self.segments)
        while index * self.hop + self.window <= received:
            # the ring holds frames up to the window's last one: exactly the window
            end = index * self.hop_frames + self.window_frames - first_new
            self._ring.write(new_frames[written:max(written, end)])
            written = max(written, end)
            windows.append(self._ring.window())
            index += 1
        self._ring.write(new_frames[written:])
        return self._score(windows)

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

    def _score(self, windows: list[Tensor]) -> list[SegmentPrediction]:
        if not windows:
            return []
        with torch.no_grad():
            probs = self.scorer.segment_probs(torch.stack(windows).to(self.device)).float().cpu()
        emitted = []
        for p in probs:
            self._score_sum = p.clone() if self._score_sum is None else self._score_sum + p
            index = len(self.segments)
            start = index * self.hop
            running = self._score_sum / (index + 1)
            segment = SegmentPrediction(
                index, start / SAMPLE_RATE,
                min(start + self.window, self.num_samples) / SAMPLE_RATE, p, self._label(p),
                running, self._label(running))
            self.segments.append(segment)
            emitted.append(segment)
        return emitted

    def _label(self, probs: Tensor) -> str:
        return self.recipe.label_names[int(probs.argmax())]

    def state(self) -> dict[str, Any]:
        """Counters of the stream (samples received, frames computed, segments emitted)."""
        return {"samples": self.num_samples, "frames": self._frames_done,
                "segments": len(self.segments)}
