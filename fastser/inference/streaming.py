"""Live emotion recognition with a trained segment-level method (GLRF; MMTL, STL and MTL with
fixed windows, i.e. the setting ``hop``; a method opts in by giving its recipe a
:class:`~fastser.train.recipe.StreamingFeatures` front end).

:class:`StreamingRecognizer` takes 16 kHz audio in chunks of any size (a 100 ms microphone
callback, single samples, several seconds at once) and emits a prediction for each new
segment as soon as its last sample has arrived, together with the running utterance
prediction (the mean of the segment scores so far). The method's front end hands over
exactly the segments and features of offline prediction, so streaming gives the offline
segment and utterance scores (the model runs on the segments a chunk completes instead of
the whole recording).

    recognizer = StreamingRecognizer.from_checkpoint("runs/glrf/best.pt")  # TorchScript model
    for chunk in microphone_chunks():
        for segment in recognizer.push(chunk):
            print(segment.start, segment.label, segment.utterance_label)
    final = recognizer.finish()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from fastser.audio.io import SAMPLE_RATE, validate_waveform
from fastser.errors import AudioError, UserError
from fastser.inference.checkpoint import load_trained
from fastser.inference.export import quiet_torchscript
from fastser.train.precision import autocast, resolve_amp
from fastser.train.recipe import Recipe


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


class StreamingRecognizer:
    """Segment-by-segment recognition of a 16 kHz audio stream.

    ``recipe``: the trained model's recipe (a segment-level method: its
    ``streaming_features()`` is not None); ``scorer``: a module with
    ``segment_probs(segments) -> (S, C)``, i.e. the recipe's export module, eager or scripted
    with TorchScript; ``amp``: mixed precision of the scorer (fastser.train.precision; "off"
    by default)."""

    def __init__(self, recipe: Recipe, scorer: nn.Module, *,
                 device: str | torch.device = "cpu", amp: str = "off") -> None:
        features = recipe.streaming_features()
        if features is None:
            raise UserError(f"streaming recognition needs a segment-level method; {recipe.name} "
                            "scores whole utterances")
        if recipe.settings.speaker_norm:
            raise UserError(f"{recipe.name}: this model standardises a recording's features with "
                            "the whole recording's statistics (speaker_norm), so a stream's "
                            "segments cannot be scored before it ends; use fastser predict, or "
                            "train a streamable model with --set speaker_norm=false")
        self.recipe, self.scorer, self.device = recipe, scorer, torch.device(device)
        self.amp = resolve_amp(amp, self.device, cpu_bf16=recipe.cpu_bf16)
        self.features = features
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, script: bool = True,
                        device: str | torch.device = "cpu", window: float | None = None,
                        hop: float | None = None, settings: Mapping[str, Any] | None = None,
                        stored_paths: bool = False, amp: str = "off") -> "StreamingRecognizer":
        """A recogniser for a training checkpoint of a segment-level method; ``script``: run
        the model scripted with TorchScript (the recipe's export module); ``window``/``hop``:
        the segments' length and hop in seconds (None: as trained); ``settings`` and
        ``stored_paths``: the path settings, as :func:`fastser.inference.load_trained`."""
        trained = load_trained(path, device=device, window=window, hop=hop, settings=settings,
                               stored_paths=stored_paths)
        if trained.recipe.streaming_features() is None:
            raise UserError(f"streaming recognition needs a segment-level method; {path} holds "
                            f"a {trained.recipe.name!r} model, which scores whole utterances")
        scorer = trained.recipe.export_module(trained.model).eval()
        if script:
            with quiet_torchscript():
                scorer = torch.jit.script(scorer)
        return cls(trained.recipe, scorer, device=device, amp=amp)

    @property
    def labels(self) -> list[str]:
        return list(self.recipe.label_names)

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new recording."""
        self.num_samples = 0  # samples received
        self.features.reset()
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
            raise AudioError(f"push: the stream must be {SAMPLE_RATE} Hz audio, got "
                             f"{sample_rate} Hz; resample the recording first")
        if getattr(chunk, "size", None) == 0 or (isinstance(chunk, Tensor) and chunk.numel() == 0):
            return []
        samples = validate_waveform(chunk, SAMPLE_RATE, SAMPLE_RATE, name="chunk",
                                    warn=False).cpu()
        self.num_samples += samples.shape[0]
        return self._score(self.features.push(samples))

    def finish(self) -> UtterancePrediction:
        """End the stream (the method decides what its end completes: GLRF scores a recording
        shorter than one window as one zero-padded window, as offline).  Returns the utterance
        prediction and every segment."""
        if self._finished:
            raise RuntimeError("finish: the stream is already finished; call reset()")
        if self.num_samples == 0:
            raise AudioError("finish: empty audio, no samples were pushed")
        if self.num_samples < self.recipe.min_samples:
            raise AudioError(f"finish: {self.num_samples} samples were pushed, fewer than the "
                             f"{self.recipe.min_samples} {self.recipe.name} needs")
        self._score(self.features.finish(self.num_samples))
        self._finished = True
        probs = self.segments[-1].utterance_probs
        return UtterancePrediction(probs, self._label(probs), list(self.segments))

    # -- scores --------------------------------------------------------------------------------
    def _score(self, windows: list[Tensor]) -> list[SegmentPrediction]:
        if not windows:
            return []
        with torch.no_grad(), autocast(self.amp, self.device):
            probs = self.scorer.segment_probs(torch.stack(windows).to(self.device)).float().cpu()
        window, hop = self.features.window, self.features.hop
        emitted = []
        for p in probs:
            self._score_sum = p.clone() if self._score_sum is None else self._score_sum + p
            index = len(self.segments)
            start = index * hop
            running = self._score_sum / (index + 1)
            segment = SegmentPrediction(
                index, start / SAMPLE_RATE, min(start + window, self.num_samples) / SAMPLE_RATE,
                p, self._label(p), running, self._label(running))
            self.segments.append(segment)
            emitted.append(segment)
        return emitted

    def _label(self, probs: Tensor) -> str:
        return self.recipe.label_names[int(probs.argmax())]

    def state(self) -> dict[str, Any]:
        """Counters of the stream (samples received, segments emitted, and the front end's
        own, e.g. GLRF's MFCC frames computed)."""
        return {"samples": self.num_samples, "segments": len(self.segments),
                **self.features.state()}
