"""MMTL (Cai et al., "Meta Multi-task Learning for Speech Emotion Recognition") and its two
baselines as recipes: "mmtl", "mtl" (multi-task: shared encoder, emotion + V/A/D heads) and
"stl" (single-task CNN-LSTM).

Features: each utterance is cut into ceil(duration / 3 s) equal pieces
(:func:`~fastser.audio.segmentation.equal_pieces`), each a 300 x 200 log-power spectrogram
(:class:`~fastser.audio.features.LogSpectrogram`); config ``pool`` = (pt, pf) average-pools it
to (300 // pt) x (200 // pf) (the demo's smaller input; the default (1, 1) is the paper's).
Segments inherit their utterance's emotion and V/A/D classes
(:func:`~fastser.models.mmtl_meta.discretise_vad`). An utterance's prediction is the mean of its
segments' posteriors.

"mmtl" brings its own training steps through the recipe hooks: :class:`SpeakerEpisodes`
samples, per step, equal-size support and query batches of segments (TrainConfig.batch_size
each) for every training speaker (or ``speakers_per_step`` of them), and ``step_gradients``
computes the first-order outer gradient of paper Algorithm 1 over those speakers, batched with
torch.func (``naive=True``: the sequential loop with a model copy per speaker). The trainer's
AdamW applies it with learning rate gamma = TrainConfig.lr. At evaluation the meta learner is
adapted to each speaker of a batch on that speaker's V/A/D tasks (``adapt_steps`` steps of
learning rate ``adapt_lr`` = gamma, using the speaker's utterances in the batch; speakers
without V/A/D labels, e.g. new recordings, are predicted unadapted). Give evaluation batches
that hold whole speakers (a large TrainConfig.eval_batch_size) for the paper's setting.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.audio.alignment import WordTiming
from fastser.audio.features import LogSpectrogram
from fastser.audio.segmentation import equal_pieces, piece_bounds, seconds_to_samples
from fastser.data.corpus import Utterance
from fastser.models.mmtl import (TABLE1_CONV, VAD_CLASSES, MMTLNet, MultiTaskNet,
                                 SegmentPosteriorMean, SingleTaskNet, utterance_posteriors)
from fastser.models.mmtl_meta import (VAD_NAMES, adapt_meta, adapted_logits, class_weights,
                                      check_speaker_chunk, discretise_vad, outer_gradients,
                                      outer_gradients_sequential, weighted_cross_entropy)
from fastser.train.recipe import (SAMPLE_RATE, Batch, Predictions, Recipe, StepGradients,
                                  TrainBatches, TrainStep)


@dataclass
class SegmentItem:
    """One utterance: segments (n, frames, bins) float32, emotion label (-1: unknown), V/A/D
    classes (3,) int64 or None (no V/A/D labels), speaker and utterance ids."""

    segments: Tensor
    label: int
    vad: Tensor | None
    speaker: str
    utterance: str


@functools.lru_cache(maxsize=1)
def _spectrogram() -> LogSpectrogram:
    return LogSpectrogram(SAMPLE_RATE)


def _vad_classes(utterance: Utterance) -> Tensor | None:
    values = [getattr(utterance, name) for name in VAD_NAMES]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        missing = [n for n, v in zip(VAD_NAMES, values) if v is None]
        raise ValueError(f"utterance {utterance.id!r}: has some V/A/D values but not {missing}")
    return torch.tensor(discretise_vad(values, utterance.id), dtype=torch.int64)


class SpectrogramRecipe(Recipe):
    """What the three recipes share: features, items, batches, utterance predictions, export.

    Config: ``pool`` (pt, pf) input pooling, ``conv`` (time kernel, frequency kernel,
    channels) per layer, ``lstm_hidden``, ``embed_dim``, ``max_duration`` (s) of a piece,
    ``naive`` (the sequential loop for "mmtl"; no effect on the baselines, which use no fused
    op)."""

    defaults: ClassVar[dict[str, Any]] = {"pool": (1, 1), "conv": TABLE1_CONV,
                                          "lstm_hidden": 128, "embed_dim": 64,
                                          "max_duration": 3.0, "naive": False}

    def __init__(self, label_names: Sequence[str], **config: Any) -> None:
        super().__init__(label_names, **config)
        pool = tuple(int(p) for p in self.settings["pool"])
        if len(pool) != 2 or min(pool) < 1:
            raise ValueError(f"{self.name}: pool must be (time, frequency) factors >= 1, "
                             f"got {self.settings['pool']}")
        self.pool = pool
        spectrogram = _spectrogram()
        self.frames = spectrogram.max_frames // pool[0]
        self.bins = spectrogram.n_bins // pool[1]
        self.emotion_weights = torch.ones(self.num_classes)  # until fit_extra

    def encoder_config(self) -> dict[str, Any]:
        return {"frames": self.frames, "bins": self.bins, "conv": self.settings["conv"],
                "lstm_hidden": self.settings["lstm_hidden"], "embed_dim": self.settings["embed_dim"]}

    # -- items ---------------------------------------------------------------------------------
    def segments(self, waveform: Tensor) -> Tensor:
        """(N,) 16 kHz audio -> (n, frames, bins) spectrogram pieces of at most max_duration."""
        pieces = equal_pieces(waveform.unsqueeze(0), max_duration=self.settings["max_duration"],
                              sample_rate=SAMPLE_RATE)
        spec, _ = _spectrogram().ragged(pieces.segments, pieces.lengths)
        if self.pool != (1, 1):
            spec = F.avg_pool2d(spec.unsqueeze(1), self.pool).squeeze(1)
        return spec.contiguous()

    def item_from_audio(self, waveform: Tensor, utterance: Utterance | None = None, *,
                        words: Sequence[WordTiming] | None = None) -> SegmentItem:
        if utterance is None:
            return SegmentItem(self.segments(waveform), -1, None, "", "")
        return SegmentItem(self.segments(waveform), self.label_index(utterance.label),
                           _vad_classes(utterance), utterance.speaker, utterance.id)

    def collate(self, items: Sequence[SegmentItem]) -> Batch:
        """segments (S, frames, bins), counts (B,), labels (B,), segment_labels (S,),
        vad (S, 3) (-1 where unknown), speakers (B,) list of ids."""
        if len(items) == 0:
            raise ValueError(f"{self.name}: empty batch")
        for item in items:
            if item.segments.dim() != 3 or tuple(item.segments.shape[1:]) != (self.frames,
                                                                                self.bins):
                raise ValueError(f"{self.name}: utterance {item.utterance!r} has segments of "
                                 f"shape {list(item.segments.shape)}, expected (n, "
                                 f"{self.frames}, {self.bins})")
        counts = torch.tensor([len(it.segments) for it in items], dtype=torch.int64)
        labels = torch.tensor([it.label for it in items], dtype=torch.int64)
        unknown = torch.full((3,), -1, dtype=torch.int64)
        vad = torch.stack([unknown if it.vad is None else it.vad for it in items])
        return {"segments": torch.cat([it.segments for it in items]), "counts": counts,
                "labels": labels, "segment_labels": labels.repeat_interleave(counts),
                "vad": vad.repeat_interleave(counts, dim=0),
                "speakers": [it.speaker for it in items]}

    # -- prediction and export -----------------------------------------------------------------
    def segment_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(batch["segments"])

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        segment_probs = self.segment_logits(model, batch).softmax(dim=1)
        return Predictions(utterance_posteriors(segment_probs, batch["counts"]), segment_probs,
                           batch["counts"])

    def segment_spans(self, num_samples: int) -> list[tuple[float, float]]:
        window = seconds_to_samples(self.settings["max_duration"], SAMPLE_RATE, "max_duration")
        bounds = (piece_bounds(num_samples, window) / SAMPLE_RATE).tolist()
        return list(zip(bounds[:-1], bounds[1:]))

    def export_module(self, model: nn.Module) -> nn.Module:
        return SegmentPosteriorMean(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return batch["segments"], batch["counts"]

    # -- class weights -------------------------------------------------------------------------
    def fit_extra(self, train_items: Sequence[SegmentItem]) -> None:
        """Emotion class weights over the training segments (N / N_c, normalised by the
        maximum; all 1 before this is called)."""
        labels = torch.cat([torch.full((len(it.segments),), it.label) for it in train_items])
        self.emotion_weights = class_weights(labels, self.num_classes)

    def extra_state(self) -> dict[str, Any]:
        return {"emotion_weights": self.emotion_weights}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.emotion_weights = state["emotion_weights"]


class STLRecipe(SpectrogramRecipe):
    """Single-task baseline: the CNN-LSTM trained on emotion only (class-weighted CE per
    segment)."""

    name = "stl"
    demo_config: ClassVar[dict[str, Any]] = {"pool": (4, 4), "conv": ((5, 5, 16), (3, 3, 24),
                                                                     (3, 3, 32))}
    demo_train: ClassVar[dict[str, Any]] = {"epochs": 8, "batch_size": 8, "lr": 2e-3,
                                            "eval_batch_size": 256}

    def build_model(self) -> nn.Module:
        return SingleTaskNet(self.num_classes, **self.encoder_config())

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        weights = self.emotion_weights.to(batch["segments"].device)
        return weighted_cross_entropy(model(batch["segments"]), batch["segment_labels"], weights)


class MTLRecipe(SpectrogramRecipe):
    """Multi-task baseline: shared encoder, emotion head and separate V/A/D heads trained
    jointly on L = CE_emotion + (1/3) sum_j CE_j (class-weighted, per segment; segments without
    V/A/D labels only enter the emotion term). No meta-learning."""

    name = "mtl"
    demo_config = STLRecipe.demo_config
    demo_train = STLRecipe.demo_train

    def __init__(self, label_names: Sequence[str], **config: Any) -> None:
        super().__init__(label_names, **config)
        self.vad_weights = torch.ones(3, VAD_CLASSES)  # until fit_extra

    def build_model(self) -> nn.Module:
        return MultiTaskNet(self.num_classes, **self.encoder_config())

    def fit_extra(self, train_items: Sequence[SegmentItem]) -> None:
        super().fit_extra(train_items)
        labelled = [it for it in train_items if it.vad is not None]
        if not labelled:
            raise ValueError(f"{self.name}: no training utterance has V/A/D labels")
        vad = torch.cat([it.vad.expand(len(it.segments), 3) for it in labelled])
        self.vad_weights = torch.stack([class_weights(vad[:, j], VAD_CLASSES) for j in range(3)])

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "vad_weights": self.vad_weights}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.vad_weights = state["vad_weights"]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        device = batch["segments"].device
        emotion_logits, vad_logits = model.heads(batch["segments"])
        loss = weighted_cross_entropy(emotion_logits, batch["segment_labels"],
                                      self.emotion_weights.to(device))
        known = batch["vad"][:, 0] >= 0
        if bool(known.any()):
            vad, weights = batch["vad"][known], self.vad_weights.to(device)
            loss = loss + sum(weighted_cross_entropy(vad_logits[known, j], vad[:, j], weights[j])
                              for j in range(3)) / 3
        return loss


class MMTLRecipe(SpectrogramRecipe):
    """MMTL: meta learner + transfer learner trained by first-order meta multi-task learning
    over speakers (see the module docstring).

    Config (besides :class:`SpectrogramRecipe`'s): ``alpha`` (0.01) and ``beta`` (0.01) the
    inner learning rates, ``speakers_per_step`` (None: every training speaker),
    ``adapt_steps`` (1; 0 turns test-time adaptation off), ``adapt_lr`` (0.001 = gamma),
    ``adapt_chunk`` (64 segments per gradient chunk), ``speaker_chunk`` (None: the batched
    outer step runs every speaker of a step at once; k: k speakers at a time, bounding its
    memory, which grows with speakers x segments per speaker)."""

    name = "mmtl"
    defaults = {**SpectrogramRecipe.defaults, "alpha": 0.01, "beta": 0.01,
                "speakers_per_step": None, "adapt_steps": 1, "adapt_lr": 0.001,
                "adapt_chunk": 64, "speaker_chunk": None}
    demo_config = STLRecipe.demo_config
    demo_train = STLRecipe.demo_train

    def __init__(self, label_names: Sequence[str], **config: Any) -> None:
        super().__init__(label_names, **config)
        for key in ("alpha", "beta", "adapt_lr"):
            value = self.settings[key]
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{self.name}: {key} must be a finite number >= 0, got {value!r}")
        for key in ("adapt_steps", "adapt_chunk"):
            if int(self.settings[key]) < (0 if key == "adapt_steps" else 1):
                raise ValueError(f"{self.name}: {key} too small: {self.settings[key]!r}")
        check_speaker_chunk(self.settings["speaker_chunk"], self.name)

    def build_model(self) -> nn.Module:
        return MMTLNet(self.num_classes, **self.encoder_config())

    def train_batches(self, train_items: Sequence[SegmentItem], batch_size: int, *, seed: int,
                      rank: int, world_size: int) -> TrainBatches:
        return SpeakerEpisodes(train_items, batch_size, self.num_classes, seed=seed,
                               speakers_per_step=self.settings["speakers_per_step"], rank=rank,
                               world_size=world_size, name=self.name)

    def step_gradients(self, model: nn.Module, batch: Batch) -> StepGradients:
        rates = {"alpha": self.settings["alpha"], "beta": self.settings["beta"]}
        if self.settings["naive"]:
            loss, gradients = outer_gradients_sequential(model, batch, **rates)
        else:
            loss, gradients = outer_gradients(model, batch, **rates,
                                              speaker_chunk=self.settings["speaker_chunk"])
        return StepGradients(loss.detach(), gradients)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """The unadapted emotion loss of an utterance batch (class-weighted CE per segment);
        training itself uses :meth:`step_gradients`."""
        weights = self.emotion_weights.to(batch["segments"].device)
        return weighted_cross_entropy(model(batch["segments"]), batch["segment_labels"], weights)

    def segment_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """Emotion logits per segment, the meta learner adapted per speaker of the batch on
        that speaker's V/A/D tasks (speakers without V/A/D labels: unadapted)."""
        segments, vad = batch["segments"], batch["vad"]
        owners = [s for s, n in zip(batch["speakers"], batch["counts"].tolist()) for _ in range(n)]
        steps = int(self.settings["adapt_steps"])
        logits = segments.new_empty(segments.shape[0], self.num_classes)
        unadapted = torch.ones(len(owners), dtype=torch.bool)
        for speaker in dict.fromkeys(owners):
            mine = torch.tensor([o == speaker for o in owners])
            support = (mine & (vad[:, 0] >= 0).cpu()).nonzero().squeeze(1).to(segments.device)
            if steps == 0 or not speaker or len(support) == 0:
                continue
            theta = adapt_meta(model, segments[support], vad[support],
                               lr=self.settings["adapt_lr"], steps=steps,
                               chunk=int(self.settings["adapt_chunk"]))
            index = mine.nonzero().squeeze(1).to(segments.device)
            with torch.no_grad():
                logits[index] = adapted_logits(model, theta, segments[index])
            unadapted &= ~mine
        if bool(unadapted.any()):
            rest = unadapted.nonzero().squeeze(1).to(segments.device)
            logits[rest] = model(segments[rest])
        return logits


class SpeakerEpisodes(TrainBatches):
    """MMTL's training steps. Every training speaker is a task; per step, each chosen speaker
    (all of them, or ``speakers_per_step`` drawn at random) contributes a support batch of
    ``per_speaker`` segments with V/A/D labels and a query batch of ``per_speaker`` segments
    with emotion labels, so the per-speaker batches stack (see
    :mod:`fastser.models.mmtl_meta`). Each speaker's segments are drawn without replacement
    from a fresh permutation (support and query independently; a new permutation when one runs
    out, so small speakers repeat segments). An epoch has ceil(training segments /
    (speakers per step x per_speaker)) steps. Deterministic for (seed, epoch). With several
    processes each takes every world_size-th chosen speaker; gradients are sums over speakers
    (share = world_size). The class weights of each speaker come from its own segments."""

    def __init__(self, items: Sequence[SegmentItem], per_speaker: int, num_classes: int, *,
                 seed: int = 0, speakers_per_step: int | None = None, rank: int = 0,
                 world_size: int = 1, name: str = "mmtl") -> None:
        self.items, self.per_speaker, self.seed = items, int(per_speaker), int(seed)
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.speakers = sorted({it.speaker for it in items})
        if len(self.speakers) < 2:
            raise ValueError(f"{name}: meta-learning over speakers needs at least 2 training "
                             f"speakers, got {self.speakers} (train the 'stl' or 'mtl' "
                             f"baseline instead)")
        self.per_step = len(self.speakers) if speakers_per_step is None else int(speakers_per_step)
        if not world_size <= self.per_step <= len(self.speakers):
            raise ValueError(f"{name}: speakers_per_step must be in [{world_size}, "
                             f"{len(self.speakers)}] (processes .. training speakers), got "
                             f"{speakers_per_step}")
        self.support, self.query = [], []  # per speaker: (P, 2) int64 (item, segment) pairs
        self.vad_weights, self.emotion_weights = [], []
        for speaker in self.speakers:
            mine = [i for i, it in enumerate(items) if it.speaker == speaker]
            support = self._pairs([i for i in mine if items[i].vad is not None])
            query = self._pairs([i for i in mine if items[i].label >= 0])
            if len(support) == 0:
                raise ValueError(f"{name}: training speaker {speaker!r} has no utterance with "
                                 f"V/A/D labels (the auxiliary tasks)")
            if len(query) == 0:
                raise ValueError(f"{name}: training speaker {speaker!r} has no utterance with "
                                 f"an emotion label")
            vad = torch.stack([items[i].vad for i in support[:, 0].tolist()])
            labels = torch.tensor([items[i].label for i in query[:, 0].tolist()])
            self.support.append(support)
            self.query.append(query)
            self.vad_weights.append(torch.stack([class_weights(vad[:, j], VAD_CLASSES)
                                                 for j in range(3)]))
            self.emotion_weights.append(class_weights(labels, num_classes))
        total = sum(len(q) for q in self.query)
        self.steps = max(1, math.ceil(total / (self.per_step * self.per_speaker)))

    def _pairs(self, indices: list[int]) -> Tensor:
        pairs = [(i, j) for i in indices for j in range(len(self.items[i].segments))]
        return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def _draws(self, pool: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` draws from ``pool`` items: permutations, one after another."""
        orders = [rng.permutation(pool) for _ in range(math.ceil(count / pool))]
        return np.concatenate(orders)[:count]

    def __iter__(self) -> Iterator[TrainStep]:
        choice = np.random.default_rng([self.seed, self.epoch])
        chosen = [sorted(choice.permutation(len(self.speakers))[:self.per_step].tolist())
                  for _ in range(self.steps)]
        mine = {k for c in chosen for k in c[self.rank::self.world_size]}
        draws = {}  # speaker -> (support, query) draws (uses, per_speaker), the same on every rank
        for k in mine:
            uses = sum(k in c for c in chosen)
            draws[k] = tuple(self._draws(len(pool[k]), uses * self.per_speaker,
                                         np.random.default_rng([self.seed, self.epoch, k, role])
                                         ).reshape(uses, self.per_speaker)
                             for role, pool in enumerate((self.support, self.query)))
        position = [0] * len(self.speakers)
        for speakers in chosen:
            parts = [self._speaker_batch(k, draws[k][0][position[k]], draws[k][1][position[k]])
                     for k in speakers[self.rank::self.world_size]]
            for k in speakers:
                position[k] += 1
            batch = {key: torch.stack([p[key] for p in parts]) for key in parts[0]}
            yield TrainStep(batch, float(self.world_size), 2 * self.per_speaker * len(parts))

    def _speaker_batch(self, k: int, support: np.ndarray, query: np.ndarray) -> dict[str, Tensor]:
        def segments(pairs: Tensor) -> Tensor:
            return torch.stack([self.items[i].segments[j] for i, j in pairs.tolist()])

        support_pairs, query_pairs = self.support[k][support], self.query[k][query]
        return {"support": segments(support_pairs),
                "support_vad": torch.stack([self.items[i].vad for i in support_pairs[:, 0].tolist()]),
                "vad_weights": self.vad_weights[k],
                "query": segments(query_pairs),
                "query_labels": torch.tensor([self.items[i].label for i in query_pairs[:, 0].tolist()]),
                "emotion_weights": self.emotion_weights[k]}
