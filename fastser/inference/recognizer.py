"""``fastser.Recognizer``: emotion and embeddings of recordings from a trained checkpoint, one
at a time or in batches packed by audio length."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE, load_audio, validate_waveform
from fastser.errors import NonFiniteError, UserError
from fastser.inference.checkpoint import load_trained
from fastser.train.precision import autocast, resolve_amp
from fastser.train.recipe import move_to

Audio = str | Path | torch.Tensor | np.ndarray
#: Default budget of a batch: seconds of audio, padded to the batch's longest recording.
BATCH_SECONDS = 120.0
Result = TypeVar("Result")


@dataclass
class SegmentScore:
    """One scored segment of a segment model: its time span in seconds and class scores."""

    start: float
    end: float
    label: str
    scores: dict[str, float]


@dataclass
class Recognition:
    """The predicted label and the class scores (None and {} for a model of affect only),
    for segment models the segment timeline, and for models with affect targets their
    predicted values (dimension -> value on the scale of the training corpus)."""

    label: str | None
    scores: dict[str, float]
    segments: list[SegmentScore] = field(default_factory=list)
    affect: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "scores": self.scores,
                "segments": [vars(s) for s in self.segments], "affect": self.affect}


@dataclass
class Embedding:
    """One recording's embeddings (float32, on the CPU): ``utterance`` (E,); for segment
    models ``segments`` (S, E_s) with their ``segment_spans`` (start, end) in seconds; for
    frame-level encoders ``frames`` (T, E_f) with their ``frame_spans``."""

    utterance: torch.Tensor
    segments: torch.Tensor | None = None
    segment_spans: list[tuple[float, float]] | None = None
    frames: torch.Tensor | None = None
    frame_spans: list[tuple[float, float]] | None = None


@dataclass
class PreparedAudio:
    """A recording featurised for the recipe: its item, its length in 16 kHz samples and its
    name in messages."""

    item: Any
    num_samples: int
    name: str = "the waveform"

    @property
    def seconds(self) -> float:
        return self.num_samples / SAMPLE_RATE


def length_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first, each holding at most
    ``budget`` once padded to its longest (a longer one is a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


class Recognizer:
    """A trained model ready for prediction: ``Recognizer.from_checkpoint(path).predict(x)``,
    ``.predict_batch([x, y, ...])``, ``.embed(x)``."""

    def __init__(self, trained, *, amp: str = "off", compile: bool = False) -> None:
        """``amp``: mixed precision of the forward pass (fastser.train.precision: "auto" is
        bf16 on GPUs and bf16-capable CPUs); ``compile``: the model under torch.compile."""
        self.recipe, self.model = trained.recipe, trained.model.eval()
        self.device = next(self.model.parameters()).device
        self.amp = resolve_amp(amp, self.device, cpu_bf16=self.recipe.cpu_bf16)
        if compile:
            self.model.compile(dynamic=True)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        window: float | None = None, hop: float | None = None,
                        settings: Mapping[str, Any] | None = None,
                        stored_paths: bool = False, amp: str = "off",
                        compile: bool = False) -> "Recognizer":
        """The checkpoint's model on ``device``; ``window``/``hop``: the segment length and
        hop in seconds of a segment-level method's predictions (None: as trained);
        ``settings``: path settings the model needs again (e.g. SAP's ``ssl_path``);
        ``stored_paths``: trust the paths stored in the checkpoint instead (see
        :func:`fastser.inference.load_trained`); ``amp`` and ``compile``: as the
        constructor's."""
        return cls(load_trained(path, device=device, window=window, hop=hop, settings=settings,
                                stored_paths=stored_paths), amp=amp, compile=compile)

    @property
    def labels(self) -> list[str]:
        return list(self.recipe.label_names)

    # -- one recording -------------------------------------------------------------------------
    def prepare(self, audio: Audio, sample_rate: int | None = None, *,
                words: Sequence[WordTiming] | None = None) -> PreparedAudio:
        """Read (a path) or check (a waveform (N,) or (channels, N) with its
        ``sample_rate``) one recording and featurise it; ``words``: word timings, for models
        that need them (CAN).  User errors for audio the method cannot use."""
        name = "the waveform"
        if isinstance(audio, (str, Path)):
            name = str(audio)
            waveform = load_audio(audio, SAMPLE_RATE)
        else:
            if sample_rate is None:
                raise UserError("predict: pass the sample_rate of an in-memory waveform")
            waveform = validate_waveform(audio, sample_rate, SAMPLE_RATE)
        return self.prepare_waveform(waveform, words=words, name=name)

    def prepare_waveform(self, waveform: torch.Tensor, *,
                         words: Sequence[WordTiming] | None = None,
                         name: str = "the waveform") -> PreparedAudio:
        """:meth:`prepare` of a checked 16 kHz mono waveform (N,); ``name``: the recording in
        messages."""
        return PreparedAudio(self.recipe.item_from_audio(waveform, None, words=words),
                             int(waveform.shape[-1]), name)

    def predict(self, audio: Audio, sample_rate: int | None = None, *,
                words: Sequence[WordTiming] | None = None) -> Recognition:
        """Emotion of one recording (see :meth:`prepare` for the arguments)."""
        return self.recognise([self.prepare(audio, sample_rate, words=words)])[0]

    def embed(self, audio: Audio, sample_rate: int | None = None, *,
              words: Sequence[WordTiming] | None = None) -> Embedding:
        """Embeddings of one recording (see :meth:`prepare` for the arguments)."""
        return self.embeddings([self.prepare(audio, sample_rate, words=words)])[0]

    # -- many recordings -----------------------------------------------------------------------
    def predict_batch(self, audios: Sequence[Audio], sample_rate: int | None = None, *,
                      words: Sequence[Sequence[WordTiming] | None] | None = None,
                      batch_seconds: float = BATCH_SECONDS) -> list[Recognition]:
        """Emotion of each recording (paths or waveforms at ``sample_rate``; ``words``: one
        list of word timings per recording), run in batches of at most ``batch_seconds`` of
        padded audio; results in the order given."""
        return self._batched(self.recognise, audios, sample_rate, words, batch_seconds)

    def embed_batch(self, audios: Sequence[Audio], sample_rate: int | None = None, *,
                    words: Sequence[Sequence[WordTiming] | None] | None = None,
                    batch_seconds: float = BATCH_SECONDS) -> list[Embedding]:
        """:meth:`embed` of each recording, batched as :meth:`predict_batch`."""
        return self._batched(self.embeddings, audios, sample_rate, words, batch_seconds)

    def _batched(self, run: Callable[[list[PreparedAudio]], list[Result]],
                 audios: Sequence[Audio], sample_rate: int | None,
                 words: Sequence[Sequence[WordTiming] | None] | None,
                 batch_seconds: float) -> list[Result]:
        if words is not None and len(words) != len(audios):
            raise UserError(f"words: give one list of word timings per recording ({len(audios)}"
                            f"), got {len(words)}")
        prepared = [self.prepare(audio, sample_rate, words=None if words is None else words[i])
                    for i, audio in enumerate(audios)]
        return self.run_batched(run, prepared, batch_seconds)

    def run_batched(self, run: Callable[[list[PreparedAudio]], list[Result]],
                    prepared: Sequence[PreparedAudio], batch_seconds: float) -> list[Result]:
        """``run`` (:meth:`recognise` or :meth:`embeddings`) over batches of ``prepared``
        packed by length (:func:`length_batches`); results in the order of ``prepared``."""
        if not batch_seconds > 0:
            raise UserError(f"batch_seconds must be positive, got {batch_seconds}")
        results: list[Any] = [None] * len(prepared)
        budget = round(batch_seconds * SAMPLE_RATE)
        for batch in length_batches([p.num_samples for p in prepared], budget):
            for index, result in zip(batch, run([prepared[i] for i in batch])):
                results[index] = result
        return results

    def recognise(self, prepared: Sequence[PreparedAudio]) -> list[Recognition]:
        """Emotion (and affect values) of prepared recordings, as one batch."""
        with torch.no_grad(), autocast(self.amp, self.device):
            preds = self.recipe.predict(self.model, self._batch(prepared))
        segments: list[torch.Tensor | None] = [None] * len(prepared)
        if preds.segment_probs is not None:
            segments = list(preds.segment_probs.float().cpu().split(
                preds.segment_counts.tolist()))
        affect = (preds.affect.float().cpu() if preds.affect is not None
                  else torch.zeros(len(prepared), 0))
        recognitions = []
        for one, probs, values, segment_probs in zip(prepared, preds.probs.float().cpu(),
                                                     affect, segments):
            _refuse_non_finite(torch.cat([probs, values, *(
                [] if segment_probs is None else [segment_probs.flatten()])]), one.name)
            recognition = Recognition(*self._labelled(probs), affect=dict(
                zip(self.recipe.affect_targets, values.tolist())))
            spans = self.recipe.segment_spans(one.num_samples)
            if segment_probs is not None and spans is not None:
                recognition.segments = [SegmentScore(start, end, *self._labelled(p))
                                        for (start, end), p in zip(spans, segment_probs)]
            recognitions.append(recognition)
        return recognitions

    def embeddings(self, prepared: Sequence[PreparedAudio]) -> list[Embedding]:
        """Embeddings of prepared recordings, as one batch."""
        with torch.no_grad(), autocast(self.amp, self.device):
            batch = self.recipe.embed(self.model, self._batch(prepared))
        found = [Embedding(e) for e in batch.utterance.float().cpu()]
        if batch.segments is not None:
            parts = batch.segments.float().cpu().split(batch.segment_counts.tolist())
            for embedding, one, part in zip(found, prepared, parts):
                embedding.segments = part
                embedding.segment_spans = self.recipe.segment_spans(one.num_samples)
        if batch.frames is not None:
            frames = batch.frames.float().cpu()
            for embedding, rows, count in zip(found, frames, batch.frame_lengths.tolist()):
                embedding.frames = rows[:count]
                embedding.frame_spans = [
                    (k * batch.frame_hop / SAMPLE_RATE,
                     (k * batch.frame_hop + batch.frame_length) / SAMPLE_RATE)
                    for k in range(count)]
        return found

    def embedding_parts(self) -> set[str]:
        """Which embeddings beyond the utterance's the model gives: "segments", "frames"."""
        with torch.no_grad():
            batch = self.recipe.embed(self.model, move_to(self.recipe.example_batch(),
                                                          self.device))
        return {part for part in ("segments", "frames") if getattr(batch, part) is not None}

    def _batch(self, prepared: Sequence[PreparedAudio]):
        return move_to(self.recipe.collate([p.item for p in prepared]), self.device)

    def _labelled(self, probs: torch.Tensor) -> tuple[str | None, dict[str, float]]:
        """(the most probable class, every class' score); (None, {}) for a model of affect
        only."""
        scores = {label: float(p) for label, p in zip(self.labels, probs)}
        return (max(scores, key=scores.get) if scores else None), scores


def _refuse_non_finite(probs: torch.Tensor, name: str) -> None:
    """NonFiniteError unless every score is finite (a NaN score is never reported)."""
    if not bool(torch.isfinite(probs).all()):
        raise NonFiniteError(f"predict: the model gave non-finite scores (NaN or infinity) for "
                             f"{name}; its weights or this input overflow the model")
