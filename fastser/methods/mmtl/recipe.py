"""The MMTL recipe (Cai et al., "Meta Multi-task Learning for Speech Emotion Recognition") and
the spectrogram-segment recipe it shares with its baselines (:mod:`.baselines`).

Features: each utterance is cut into ceil(duration / ``max_duration``) equal pieces
(:func:`~fastser.audio.segmentation.equal_pieces`), each a 300 x 200 log-power spectrogram
(:class:`~fastser.audio.features.LogSpectrogram`); the setting ``pool`` = (pt, pf)
average-pools it to (300 // pt) x (200 // pf) (the demo's smaller input; the default (1, 1) is
the paper's). With the setting ``hop``, pieces are instead fixed windows of ``max_duration``
every ``hop`` seconds (:func:`~fastser.audio.segmentation.fixed_windows`), which do not depend
on the utterance's length and so stream (:meth:`SpectrogramRecipe.streaming_features`; the
prediction command sets it with ``--hop``). Segments inherit their utterance's emotion and its
affect classes (valence, arousal and dominance, each discretised into 4 classes by
:func:`~fastser.methods.mmtl.meta.discretise_affect`). An utterance's prediction is the mean of
its segments' posteriors.

"mmtl" brings its own training steps through the recipe hooks: :class:`~fastser.methods.mmtl.
episodes.SpeakerEpisodes` samples, per step, equal-size support and query batches of segments
(TrainConfig.batch_size each; the same segments with ``episode_draws="same"``) for every
training speaker (or ``speakers_per_step`` of them), and ``step_gradients`` computes the
first-order outer gradient of paper Algorithm 1 over those speakers (``outer_update``), batched
with torch.func (``implementation="reference"``: the sequential loop with a model copy per
speaker). The trainer's optimiser applies it with learning rate gamma = TrainConfig.lr. At
evaluation (:meth:`MMTLRecipe.adapt`, called by ``fastser.train.evaluation``) the meta learner
is adapted to each speaker of the evaluated utterances on all of that speaker's affect-labelled
utterances there (:mod:`~fastser.methods.mmtl.adaptation`), whatever the evaluation batch
size; speakers without affect labels, and new recordings, are predicted unadapted.

Settings: :class:`SpectrogramSettings` (all three methods) and :class:`MMTLSettings`
(``fastser settings mmtl`` lists them with their defaults and ranges).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.audio.alignment import WordTiming
from fastser.audio.features import LogSpectrogram
from fastser.audio.io import SAMPLE_RATE
from fastser.audio.segmentation import (equal_pieces, fixed_windows, piece_bounds,
                                        seconds_to_samples, window_starts)
from fastser.data.collate import pack_sequences
from fastser.data.corpus import Corpus, Utterance
from fastser.errors import CorpusError, SettingsError
from fastser.methods.mmtl.adaptation import ADAPT_OPTIMIZERS, SpeakerAdaptedNet, adapt_meta
from fastser.methods.mmtl.episodes import EPISODE_DRAWS, SpeakerEpisodes
from fastser.methods.mmtl.meta import (AFFECT_NAMES, AFFECT_RANGE, OUTER_UPDATES,
                                       class_weights, discretise_affect, outer_gradients,
                                       outer_gradients_sequential, select_tasks,
                                       weighted_cross_entropy)
from fastser.methods.mmtl.model import (LSTM_SUMMARIES, SMALL_CONV, TABLE1_CONV,
                                        TRANSFER_INPUTS, MMTLNet, SegmentPosteriorMean,
                                        utterance_posteriors)
from fastser.train.kit import AugmentSettings, Preset, redefault, setting
from fastser.train.kit.streaming import FixedWindowStream
from fastser.train.recipe import (Batch, Embeddings, Predictions, Recipe, StepGradients,
                                  StreamingFeatures, TrainBatches)

#: The paper's log-power spectrogram (300 frames of 40 ms every 10 ms, 200 bins up to 4 kHz).
SPECTROGRAM = LogSpectrogram(SAMPLE_RATE)


@dataclass(frozen=True, kw_only=True)
class SpectrogramSettings(AugmentSettings):
    """Settings of "stl", "mtl" and "mmtl": the input and the CNN-LSTM. The defaults (a pooled
    75 x 50 input, a smaller conv stack, speaker_norm) are the measured ones on real speech
    (bench/RESULTS.md, "Default settings on real speech"); the paper's input and Table 1's
    network are the paper preset's. ``implementation`` only matters to "mmtl" (its outer
    step)."""

    speaker_norm: bool = redefault(AugmentSettings, "speaker_norm", True)
    pool: tuple[int, int] = setting(
        (4, 4), "average pooling factors (time, frequency) of the 300 x 200 spectrogram "
        "pieces (1, 1: the paper's unpooled input)", low=1)
    conv: tuple[tuple[int, int, int], ...] = setting(
        SMALL_CONV, "conv layers as (time kernel, frequency kernel, channels), each followed "
        "by ReLU and 2x2 max pooling (the paper's: Table 1's)", low=1)
    #: fastser 0.1's defaults: the paper's input and network, no per-speaker standardisation.
    defaults_0_1 = {"pool": (1, 1), "conv": TABLE1_CONV, "speaker_norm": False}
    lstm_hidden: int = setting(128, "hidden units per direction of the BiLSTM", low=1)
    lstm_summary: str = setting(
        "final", "what FC_1 reads of the BiLSTM: final (the final states of both directions) or "
        "mean (its outputs averaged over time, the authors' code)", choices=LSTM_SUMMARIES)
    embed_dim: int = setting(64, "size of the representation (the FC layer after the BiLSTM)",
                             low=1)
    max_duration: float = setting(3.0, "longest piece in seconds: an utterance is cut into "
                                  "ceil(duration / max_duration) equal pieces", low=0.0,
                                  low_open=True)
    hop: float | None = setting(None, "null: the equal pieces (the paper's); a value: pieces "
                                "of max_duration seconds starting every hop seconds instead "
                                "(the tail shorter than hop dropped; at most max_duration; "
                                "streamable)", low=0.0, low_open=True)

    def check(self, method: str) -> None:
        super().check(method)
        if not self.conv:
            raise SettingsError(f"{method}: setting conv needs at least one layer")
        longest = SPECTROGRAM.frame_length + (SPECTROGRAM.max_frames - 1) * SPECTROGRAM.hop_length
        if self.max_duration * SAMPLE_RATE > longest:
            raise SettingsError(f"{method}: setting max_duration ({self.max_duration} s) must be "
                                f"at most {longest / SAMPLE_RATE:g} s: the spectrogram keeps "
                                f"{SPECTROGRAM.max_frames} frames of a piece")
        if self.hop is not None and self.hop > self.max_duration:
            raise SettingsError(f"{method}: setting hop ({self.hop} s) must be at most "
                                f"max_duration ({self.max_duration} s)")


@dataclass(frozen=True, kw_only=True)
class MMTLSettings(SpectrogramSettings):
    """Settings of "mmtl": the spectrogram network's and those of meta-learning."""

    transfer_input: str = setting(
        "representation", "what the transfer learner FC_3 reads: affect_logits (FC_2's output, "
        "Table 1) or representation (FC_1's output, fastser 0.1)", choices=TRANSFER_INPUTS)
    outer_update: str = setting(
        "aggregate", "outer gradient: aggregate (Algorithm 1 line 11 as the authors' code reads "
        "it: the auxiliary gradients at theta and both stages' emotion gradients, first-order) "
        "or maml (Eq. 6-7 alone, first-order; fastser 0.1, which never trains FC_2 when the "
        "transfer learner reads the representation)", choices=OUTER_UPDATES)
    auxiliary_tasks: tuple[str, ...] = setting(
        AFFECT_NAMES, "the affect tasks of the meta learner, a non-empty selection of "
        f"{', '.join(AFFECT_NAMES)} (Table 3)")
    episode_draws: str = setting(
        "independent", "a speaker's support and query batches: same (one draw of segments for "
        "both tasks, Eq. 1-3) or independent (two draws)", choices=EPISODE_DRAWS)
    alpha: float = setting(0.01, "inner learning rate of the meta learner on a speaker's "
                           "affect (auxiliary) tasks", low=0.0)
    beta: float = setting(0.01, "inner learning rate of the transfer learner on a speaker's "
                          "query batch", low=0.0)
    speakers_per_step: int | None = setting(
        None, "speakers (tasks) per outer step, drawn at random (null: every training "
        "speaker)", low=1)
    adapt_steps: int = setting(1, "test-time adaptation steps of the meta learner on all of a "
                               "speaker's affect-labelled utterances (0: no adaptation)", low=0)
    adapt_lr: float = setting(0.001, "learning rate of test-time adaptation (gamma)", low=0.0)
    adapt_optimizer: str = setting("sgd", "optimiser of test-time adaptation: sgd (plain "
                                   "gradient steps) or adam (the authors' code)",
                                   choices=ADAPT_OPTIMIZERS)
    adapt_chunk: int = setting(64, "segments per gradient chunk of test-time adaptation "
                               "(bounds memory; the same gradient)", low=1)
    speaker_chunk: int | None = setting(
        None, "speakers per vmap chunk of the batched outer step (null: all at once; k bounds "
        "its memory, which grows with speakers x segments per speaker)", low=1)

    #: fastser 0.1 took the outer gradient of Eq. 6-7 alone.
    defaults_0_1 = {**SpectrogramSettings.defaults_0_1, "outer_update": "maml"}

    def check(self, method: str) -> None:
        super().check(method)
        if self.speed_perturb:
            raise SettingsError(f"{method}: setting speed_perturb changes how many pieces an "
                                "utterance has, which the speaker episodes index once; use "
                                "noise_snr or the masks")
        tasks = self.auxiliary_tasks
        if not tasks or len(set(tasks)) != len(tasks) or not set(tasks) <= set(AFFECT_NAMES):
            raise SettingsError(f"{method}: setting auxiliary_tasks must be a non-empty "
                                f"selection of {list(AFFECT_NAMES)} without repeats, got "
                                f"{list(tasks)}")


DEMO = Preset("smaller input (75 x 50) and network for the synthetic corpus",
              settings={"pool": (4, 4), "conv": SMALL_CONV, "speaker_norm": False},
              training={"epochs": 8, "batch_size": 8, "lr": 2e-3, "eval_batch_size": 256})
#: The training of the default settings (measured on real speech, bench/RESULTS.md): the
#: demo's, 30 epochs, the last epoch's model.
TRAINING_DEFAULTS = {**DEMO.training, "epochs": 30, "select": "last"}
#: The paper's input and network (Table 1), which the defaults replace (fastser 0.1's
#: defaults).
PAPER_INPUT = dict(SpectrogramSettings.defaults_0_1)
#: The paper's training (Sec. 3.1.3: Adam, gamma = 0.001), the authors' code for what it
#: leaves open (300 epochs, a constant learning rate, no clipping); docs/methods.md lists them.
PAPER_TRAINING = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant",
                  "warmup_fraction": 0.0, "grad_clip": None, "epochs": 300, "monitor": "ua"}
#: The baselines of Table 2 ("CNN-LSTM", "CNN-LSTM+MTL") with MMTL's input, network and
#: training: batches of 64 utterances (the authors' batch size).
BASELINE_PAPER = Preset("the paper's input, Table 1 network and training (docs/methods.md)",
                        settings={**PAPER_INPUT, "lstm_summary": "mean"},
                        training={**PAPER_TRAINING, "batch_size": 64})
#: MMTL as the paper (and, where it is ambiguous, the authors' code) has it; per-speaker
#: batches of 48 segments (the authors' 64 for the largest speaker, proportionally fewer for
#: the others: about 48 on IEMOCAP's improvised sessions); 15 Adam steps of test-time
#: adaptation (the authors' first test point: 5 epochs of ~3 batches).
MMTL_PAPER = Preset("the paper's MMTL: Table 1 (FC_3 on FC_2), Algorithm 1 with the authors' "
                    "outer update, Eq. 1-3's shared samples, Adam test-time adaptation "
                    "(docs/methods.md)",
                    settings={**PAPER_INPUT, "lstm_summary": "mean",
                              "transfer_input": "affect_logits",
                              "outer_update": "aggregate", "episode_draws": "same",
                              "alpha": 0.01, "beta": 0.01, "adapt_optimizer": "adam",
                              "adapt_lr": 1e-3, "adapt_steps": 15},
                    training={**PAPER_TRAINING, "batch_size": 48})


@dataclass
class SegmentItem:
    """One utterance: segments (n, frames, bins) float32, emotion label (-1: unknown), affect
    classes (3,) int64 or None (no affect labels), speaker and utterance ids ("" for a new
    recording), and the frames of each segment that hold audio (n,) int64 (the rest is zero
    padding)."""

    segments: Tensor
    label: int
    affect: Tensor | None
    speaker: str
    utterance: str
    valid_frames: Tensor


def affect_requirements(corpus: Corpus, *, per_speaker: bool) -> list[str]:
    """Why ``corpus`` cannot give the affect tasks (valence, arousal and dominance, each
    discretised on IEMOCAP's scale) of "mtl" (some utterance needs them) or "mmtl"
    (``per_speaker``: every speaker needs some)."""
    annotated = [u for u in corpus if all(v is not None for v in u.affect)]
    reasons = []
    low, high = AFFECT_RANGE
    outside = sum(not all(low <= v <= high for v in u.affect) for u in annotated)
    if outside:
        reasons.append(f"discretises valence, arousal and dominance on IEMOCAP's 1-5 scale: "
                       f"{outside} utterance(s) have values outside [{low:g}, {high:g}]")
    lacking = sorted({u.speaker for u in corpus} - {u.speaker for u in annotated})
    if per_speaker and lacking:
        reasons.append(f"its auxiliary tasks need valence, arousal and dominance from every "
                       f"speaker; {len(lacking)} speaker(s) have none (e.g. {lacking[0]!r})")
    elif not annotated:
        reasons.append("its auxiliary tasks need valence, arousal and dominance; no utterance "
                       "has all three")
    return reasons


def affect_classes(utterance: Utterance) -> Tensor | None:
    """The discretised (valence, arousal, dominance) of ``utterance`` (3,) int64, or None
    when it has none; CorpusError when it has some but not all, or one out of range."""
    values = [getattr(utterance, name) for name in AFFECT_NAMES]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        missing = [n for n, v in zip(AFFECT_NAMES, values) if v is None]
        raise CorpusError(f"has some affect values ({', '.join(AFFECT_NAMES)}) but not "
                          f"{missing}")
    return torch.tensor(discretise_affect(values), dtype=torch.int64)


class SpectrogramRecipe(Recipe):
    """What the three recipes share: features, items, batches, the emotion loss, utterance
    predictions, export and the emotion class weights."""

    Settings = SpectrogramSettings
    settings: SpectrogramSettings
    training_defaults = TRAINING_DEFAULTS
    presets = {"demo": DEMO, "paper": BASELINE_PAPER}
    #: One spectrogram frame (40 ms).
    min_samples = SPECTROGRAM.win_length
    segment_settings = ("max_duration", "hop")

    def __init__(self, label_names: Sequence[str], **settings: Any) -> None:
        super().__init__(label_names, **settings)
        self.pool = self.settings.pool
        self.frames = SPECTROGRAM.max_frames // self.pool[0]
        self.bins = SPECTROGRAM.n_bins // self.pool[1]
        self.emotion_weights = torch.ones(self.num_classes)  # until fit_extra

    def encoder_config(self) -> dict[str, Any]:
        s = self.settings
        return {"frames": self.frames, "bins": self.bins, "conv": s.conv,
                "lstm_hidden": s.lstm_hidden, "embed_dim": s.embed_dim,
                "summary": s.lstm_summary}

    # -- items ---------------------------------------------------------------------------------
    def pieces(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        """(N,) 16 kHz audio -> (n, frames, bins) spectrogram pieces of at most max_duration
        (equal pieces, or fixed windows every ``hop`` seconds), and the frames of each that
        hold audio (n,) int64."""
        s = self.settings
        if s.hop is None:
            cut = equal_pieces(waveform.unsqueeze(0), max_duration=s.max_duration,
                               sample_rate=SAMPLE_RATE)
        else:
            cut = fixed_windows(waveform.unsqueeze(0), window=s.max_duration, hop=s.hop,
                                sample_rate=SAMPLE_RATE)
        return self.piece_features(cut.segments, cut.lengths)

    def piece_features(self, segments: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Zero-padded pieces (n, samples) of ``lengths`` (n,) samples -> their spectrograms
        (n, frames, bins) and the frames of each that hold audio (n,) int64."""
        spec, frame_lengths = SPECTROGRAM.ragged(segments, lengths)
        if self.pool != (1, 1):
            spec = F.avg_pool2d(spec.unsqueeze(1), self.pool).squeeze(1)
        valid = torch.div(frame_lengths + self.pool[0] - 1, self.pool[0], rounding_mode="floor")
        return spec.contiguous(), valid.clamp(max=self.frames)

    def make_item(self, waveform: Tensor, utterance: Utterance | None, *,
                  words: Sequence[WordTiming] | None = None) -> SegmentItem:
        segments, valid = self.pieces(waveform)
        if utterance is None:
            return SegmentItem(segments, -1, None, "", "", valid)
        return SegmentItem(segments, self.label_of(utterance), affect_classes(utterance),
                           utterance.speaker, utterance.id, valid)

    def item_features(self, item: SegmentItem) -> Tensor:
        """The frames of every segment that hold audio, one after another (T, bins)."""
        return torch.cat([segment[:n] for segment, n in
                          zip(item.segments, item.valid_frames.tolist())])

    def with_features(self, item: SegmentItem, features: Tensor) -> SegmentItem:
        segments = torch.zeros_like(item.segments)
        for segment, part in zip(segments, features.split(item.valid_frames.tolist())):
            segment[:part.shape[0]] = part
        return replace(item, segments=segments)

    # -- batches -------------------------------------------------------------------------------
    def make_batch(self, items: list[SegmentItem]) -> Batch:
        """segments (S, frames, bins), counts (B,), labels (B,), segment_labels (S,),
        affect (S, 3) (-1 where unknown), speakers (B,) list of ids."""
        for item in items:
            if item.segments.dim() != 3 or tuple(item.segments.shape[1:]) != (self.frames,
                                                                                self.bins):
                raise ValueError(f"{self.name}: utterance {item.utterance!r} has segments of "
                                 f"shape {list(item.segments.shape)}, expected (n, "
                                 f"{self.frames}, {self.bins})")
        segments, counts = pack_sequences([it.segments for it in items])
        labels = torch.tensor([it.label for it in items], dtype=torch.int64)
        unknown = torch.full((3,), -1, dtype=torch.int64)
        affect = torch.stack([unknown if it.affect is None else it.affect for it in items])
        return {"segments": segments, "counts": counts, "labels": labels,
                "segment_labels": labels.repeat_interleave(counts),
                "affect": affect.repeat_interleave(counts, dim=0),
                "speakers": [it.speaker for it in items]}

    # -- loss, prediction and export -----------------------------------------------------------
    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """The emotion loss of an utterance batch: class-weighted cross entropy per segment
        ("mmtl" trains with :meth:`MMTLRecipe.step_gradients` instead; this is its unadapted
        loss)."""
        weights = self.emotion_weights.to(batch["segments"].device)
        return weighted_cross_entropy(model(batch["segments"]), batch["segment_labels"], weights)

    def segment_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(batch["segments"])

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        segment_probs = self.segment_logits(model, batch).softmax(dim=1)
        return Predictions(utterance_posteriors(segment_probs, batch["counts"]), segment_probs,
                           batch["counts"])

    def segment_spans(self, num_samples: int) -> list[tuple[float, float]]:
        window = self._samples("max_duration")
        if self.settings.hop is not None:
            starts = window_starts(num_samples, window, self._samples("hop")).tolist()
            return [(start / SAMPLE_RATE, min(start + window, num_samples) / SAMPLE_RATE)
                    for start in starts]
        bounds = (piece_bounds(num_samples, window) / SAMPLE_RATE).tolist()
        return list(zip(bounds[:-1], bounds[1:]))

    def _samples(self, key: str) -> int:
        return seconds_to_samples(getattr(self.settings, key), SAMPLE_RATE, key)

    def streaming_features(self) -> StreamingFeatures:
        """Fixed windows only: equal pieces depend on the whole recording's length."""
        if self.settings.hop is None:
            raise SettingsError(
                f"{self.name} cuts a recording into equal pieces whose boundaries depend on its "
                "whole length, so it cannot stream them; set hop (fastser stream --hop "
                "SECONDS) to score pieces of max_duration every hop seconds, which stream "
                "exactly (fastser predict --hop SECONDS scores the same pieces offline)")
        return FixedWindowStream(self._samples("max_duration"), self._samples("hop"),
                                 lambda windows, lengths: self.piece_features(windows,
                                                                              lengths)[0])

    def embed(self, model: nn.Module, batch: Batch) -> Embeddings:
        """Per piece the representation its emotion head reads (S, embed_dim; MMTL's meta
        learner unadapted); per utterance the mean over its pieces."""
        segments = model.embed(batch["segments"])
        return Embeddings(utterance_posteriors(segments, batch["counts"]), segments,
                          batch["counts"])

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


class MMTLRecipe(SpectrogramRecipe):
    """MMTL: meta learner + transfer learner trained by first-order meta multi-task learning
    over speakers, the meta learner adapted to each test speaker (see the module docstring)."""

    name = "mmtl"
    Settings = MMTLSettings
    presets = {"demo": DEMO, "paper": MMTL_PAPER}
    # its per-speaker meta steps of small matrices measured 0.90x in bf16 (bench/RESULTS.md)
    cpu_bf16 = False
    settings: MMTLSettings

    def build_model(self) -> nn.Module:
        return MMTLNet(self.num_classes, transfer_input=self.settings.transfer_input,
                       **self.encoder_config())

    def requirements(self, corpus: Corpus) -> list[str]:
        """Besides the classes: at least 2 speakers to meta-learn over, each with affect
        labels."""
        reasons = super().requirements(corpus) + affect_requirements(corpus, per_speaker=True)
        if len(corpus.speakers) < 2:
            reasons.append(f"meta-learns over speakers: needs at least 2, has "
                           f"{len(corpus.speakers)}")
        return reasons

    def train_batches(self, train_items: Sequence[SegmentItem], batch_size: int, *, seed: int,
                      rank: int, world_size: int) -> TrainBatches:
        return SpeakerEpisodes(train_items, batch_size, self.num_classes, seed=seed,
                               speakers_per_step=self.settings.speakers_per_step, rank=rank,
                               world_size=world_size, draws=self.settings.episode_draws,
                               name=self.name)

    @property
    def task_indices(self) -> list[int]:
        """The selected auxiliary tasks as indices into :data:`AFFECT_NAMES`."""
        return [AFFECT_NAMES.index(task) for task in self.settings.auxiliary_tasks]

    def step_gradients(self, model: nn.Module, batch: Batch) -> StepGradients:
        s = self.settings
        if len(self.task_indices) < len(AFFECT_NAMES):
            batch = select_tasks(batch, self.task_indices)
        if s.implementation == "reference":
            loss, gradients = outer_gradients_sequential(model, batch, alpha=s.alpha,
                                                         beta=s.beta, update=s.outer_update)
        else:
            loss, gradients = outer_gradients(model, batch, alpha=s.alpha, beta=s.beta,
                                              update=s.outer_update,
                                              speaker_chunk=s.speaker_chunk)
        return StepGradients(loss.detach(), gradients)

    def adapt(self, model: nn.Module, items: Sequence[SegmentItem]) -> nn.Module:
        """Test-time adaptation: the meta learner adapted to each speaker of ``items`` on all
        of that speaker's affect-labelled items, on the ``auxiliary_tasks`` (``adapt_steps``
        steps of ``adapt_optimizer`` at ``adapt_lr``), as a :class:`SpeakerAdaptedNet`;
        ``model`` itself when there is nothing to adapt."""
        s = self.settings
        by_speaker: dict[str, list[SegmentItem]] = {}
        for item in items:
            if item.speaker and item.affect is not None:
                by_speaker.setdefault(item.speaker, []).append(item)
        if s.adapt_steps == 0 or not by_speaker:
            return model
        device = next(model.parameters()).device
        adapted = {}
        for speaker, mine in by_speaker.items():
            segments = torch.cat([it.segments for it in mine]).to(device)
            affect = torch.cat([it.affect[self.task_indices].expand(len(it.segments), -1)
                                for it in mine])
            adapted[speaker] = adapt_meta(model, segments, affect.to(device), lr=s.adapt_lr,
                                          steps=s.adapt_steps, chunk=s.adapt_chunk,
                                          optimizer=s.adapt_optimizer)
        return SpeakerAdaptedNet(model, adapted)

    def segment_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """Emotion logits per segment; with a :class:`SpeakerAdaptedNet` (from :meth:`adapt`)
        each segment under its speaker's adapted meta learner."""
        if not isinstance(model, SpeakerAdaptedNet):
            return model(batch["segments"])
        owners = [s for s, n in zip(batch["speakers"], batch["counts"].tolist())
                  for _ in range(n)]
        return model.speaker_logits(batch["segments"], owners)
