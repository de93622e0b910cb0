"""``fastser.Recognizer``: emotion of a recording from a trained checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE, load_audio, validate_waveform
from fastser.errors import UserError
from fastser.inference.checkpoint import load_trained
from fastser.train.precision import autocast, resolve_amp
from fastser.train.recipe import move_to


@dataclass
class SegmentScore:
    """One scored segment of a segment model: its time span in seconds and class scores."""

    start: float
    end: float
    label: str
    scores: dict[str, float]


@dataclass
class Recognition:
    """The predicted label, the class scores and, for segment models, the segment timeline."""

    label: str
    scores: dict[str, float]
    segments: list[SegmentScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "scores": self.scores,
                "segments": [vars(s) for s in self.segments]}


class Recognizer:
    """A trained model ready for prediction: ``Recognizer.from_checkpoint(path).predict(x)``."""

    def __init__(self, trained, *, amp: str = "off", compile: bool = False) -> None:
        """``amp``: mixed precision of the forward pass (fastser.train.precision: "auto" is
        bf16 on GPUs and bf16-capable CPUs); ``compile``: the model under torch.compile."""
        self.recipe, self.model = trained.recipe, trained.model.eval()
        self.device = next(self.model.parameters()).device
        self.amp = resolve_amp(amp, self.device)
        if compile:
            self.model.compile(dynamic=True)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "cpu", amp: str = "off",
                        compile: bool = False) -> "Recognizer":
        return cls(load_trained(path, device=device), amp=amp, compile=compile)

    @property
    def labels(self) -> list[str]:
        return list(self.recipe.label_names)

    def predict(self, audio: str | Path | torch.Tensor | np.ndarray, sample_rate: int | None = None,
                *, words: Sequence[WordTiming] | None = None) -> Recognition:
        """Emotion of one recording: a path to an audio file, or a waveform (N,) or
        (channels, N) with its ``sample_rate``.  ``words``: word timings, for models that need
        them (CAN)."""
        if isinstance(audio, (str, Path)):
            waveform = load_audio(audio, SAMPLE_RATE)
        else:
            if sample_rate is None:
                raise UserError("predict: pass the sample_rate of an in-memory waveform")
            waveform = validate_waveform(audio, sample_rate, SAMPLE_RATE)
        item = self.recipe.item_from_audio(waveform, None, words=words)
        batch = move_to(self.recipe.collate([item]), self.device)
        with torch.no_grad(), autocast(self.amp, self.device):
            preds = self.recipe.predict(self.model, batch)
        scores = self._scores(preds.probs[0])
        recognition = Recognition(max(scores, key=scores.get), scores)
        spans = self.recipe.segment_spans(int(waveform.shape[-1]))
        if preds.segment_probs is not None and spans is not None:
            for (start, end), probs in zip(spans, preds.segment_probs):
                seg_scores = self._scores(probs)
                recognition.segments.append(
                    SegmentScore(start, end, max(seg_scores, key=seg_scores.get), seg_scores))
        return recognition

    def _scores(self, probs: torch.Tensor) -> dict[str, float]:
        return {label: float(p) for label, p in zip(self.labels, probs.float().cpu())}
