"""The interface between the trainer and one SER method.

A recipe knows how its method turns corpus utterances into features (``featurize``), batches
(``collate``), a training loss and utterance-level predictions. The trainer, the
cross-validation runner, the command line and :class:`fastser.Recognizer` only talk to recipes.

Two optional hooks let a method bring its own optimisation step while keeping the rest of the
trainer (optimiser, schedule, clipping, checkpoints, resumption, metrics, early stopping):
``train_batches`` (its own sampling, e.g. per-speaker episodes) and ``step_gradients`` (its
own gradients, e.g. a meta-learning outer step). Both default to None: the trainer's shuffled
utterance batches and back-propagation of ``loss``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE
from fastser.data.corpus import Corpus, Utterance
from fastser.errors import CheckpointError, CorpusError, SettingsError, UserError
from fastser.train.kit.affect import EMOTION, affect_values
from fastser.train.kit.augment import Augmentation, AugmentSettings, TrainingItems
from fastser.train.kit.settings import Preset, Settings
from fastser.train.kit.standardise import standardise_by_speaker
from fastser.train.kit.waveforms import check_waveform

#: A collated batch: tensors (and lists of ids) by name, as a recipe's make_batch builds it.
Batch = dict[str, Any]


@dataclass
class Predictions:
    """Scores for a batch of B utterances.

    probs: (B, C) utterance class probabilities (C = 0 for a model without emotion classes).
    Segment-level methods also give segment_probs (S, C), packed utterance after utterance,
    and segment_counts (B,) int64. Methods with affect targets give affect (B, K): the
    predicted values of the recipe's ``affect_targets``, on the corpus' scale.
    """

    probs: torch.Tensor
    segment_probs: torch.Tensor | None = None
    segment_counts: torch.Tensor | None = None
    affect: torch.Tensor | None = None


@dataclass
class Embeddings:
    """Learnt representations of a batch of B utterances: ``utterance`` (B, E), the pooled
    representation the method's classifier reads.  Segment-level methods also give
    ``segments`` (S, E_s), packed utterance after utterance with ``segment_counts`` (B,) (the
    segments of :meth:`Recipe.segment_spans`); frame-level encoders give ``frames``
    (B, T, E_f) padded, with ``frame_lengths`` (B,), frame k spanning samples
    ``[k * frame_hop, k * frame_hop + frame_length)``."""

    utterance: torch.Tensor
    segments: torch.Tensor | None = None
    segment_counts: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    frame_lengths: torch.Tensor | None = None
    frame_hop: int = 0
    frame_length: int = 0


@dataclass
class TrainStep:
    """One training step's batch on this process.  ``share``: the weight of this process's
    gradient, so that the mean over processes of share x gradient is the step's gradient (1
    on one process); ``count``: the examples in the batch (the epoch's mean loss weighs the
    step's loss by it)."""

    batch: Batch
    share: float
    count: int


class TrainBatches(abc.ABC):
    """The training steps of one epoch when a recipe samples its own batches.  Must give the
    same steps for the same seed and epoch (exact resumption)."""

    @abc.abstractmethod
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose steps ``__iter__`` yields."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Steps per epoch (the same on every process)."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[TrainStep]:
        """This process's steps of the current epoch."""


@dataclass
class StepGradients:
    """A training step computed by the recipe: the loss to report (a detached scalar) and one
    gradient per model parameter, in ``model.parameters()`` order."""

    loss: torch.Tensor
    gradients: list[torch.Tensor]


class StreamingFeatures(abc.ABC):
    """A segment-level method's front end for live audio: 16 kHz samples in, the feature
    tensors of the segments they complete out, exactly the segments (and features) that
    offline prediction scores. Segment k spans samples ``[k * hop, k * hop + window)``; the
    method's export module scores them with ``segment_probs(features (S, ...)) -> (S, C)``."""

    window: int  # samples per segment
    hop: int  # samples between segment starts

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the stream."""

    @abc.abstractmethod
    def push(self, samples: torch.Tensor) -> list[torch.Tensor]:
        """Take the next float32 samples (N,); the features of every segment they complete."""

    @abc.abstractmethod
    def finish(self, num_samples: int) -> list[torch.Tensor]:
        """The features of segments only the end of a ``num_samples`` stream completes (e.g.
        a recording shorter than one window, scored zero-padded as offline)."""

    def state(self) -> dict[str, int]:
        """Counters of the front end (reported by the streaming recogniser)."""
        return {}


class Recipe(abc.ABC):
    """One method: model construction, features, batches, loss and prediction.

    A recipe holds only what is special about its method; the shared sub-problems are solved
    here and in :mod:`fastser.train.kit`: typed settings (``Settings``, one dataclass per
    method, checked before any work), presets, waveform checks, label lookup, per-speaker
    standardisation (the ``speaker_norm`` setting, through :meth:`item_features` /
    :meth:`with_features`), training augmentation (:meth:`augmented_copies`,
    :meth:`training_items`) and the empty-batch guard. A subclass implements
    :meth:`make_item`, :meth:`make_batch`, :meth:`build_model`, :meth:`loss`, :meth:`predict`,
    :meth:`export_module`, :meth:`export_inputs` and :meth:`embed`.

    What a method predicts is its settings' ``targets`` (methods that can carry affect
    dimensions declare that setting; the others predict the emotion classes only): the label
    order is the class order of the model, and ``affect_targets`` the columns of
    ``Predictions.affect``. A recipe without the emotion target has no classes."""

    name: ClassVar[str]
    #: The method's settings: a dataclass of typed, range-checked fields with their defaults.
    Settings: ClassVar[type[Settings]] = Settings
    #: Named starting points (``--preset NAME``); "demo" trains on the synthetic corpus in
    #: about a minute on 2 CPU cores.
    presets: ClassVar[dict[str, Preset]] = {}
    #: The fewest 16 kHz samples an item can be made from.
    min_samples: ClassVar[int] = 1
    #: Segment-level methods: the settings holding the segment length and the hop between
    #: segment starts in prediction, in seconds (``fastser predict --window/--hop`` override
    #: them); None: the method scores whole utterances.
    segment_settings: ClassVar[tuple[str, str] | None] = None
    #: False for a method whose model is fitted in :meth:`fit_extra` (closed form, scikit-learn):
    #: the trainer then runs one epoch that only evaluates and checkpoints, no optimisation.
    gradient_trained: ClassVar[bool] = True
    #: The training options (TrainConfig fields) a run of this method starts from when no
    #: preset is named (``fastser train/cv``; a preset's training options replace them, and the
    #: command line's options override both): the method's measured defaults
    #: (bench/RESULTS.md, "Default settings on real speech").
    training_defaults: ClassVar[Mapping[str, Any]] = {}
    #: False for a method whose training (its step or its whole cross-validation) measured
    #: no faster in bf16 than in float32 on a bf16-capable CPU: ``--amp auto`` then trains
    #: and predicts it in float32 on the CPU (fastser.train.precision; bench/RESULTS.md,
    #: issue 19).
    cpu_bf16: ClassVar[bool] = True

    def __init__(self, label_names: Sequence[str], **settings: Any) -> None:
        self.settings = self.Settings.build(self.name, settings)
        #: Path settings whose value came from a checkpoint and that the user did not pass
        #: again: :meth:`path` does not use them (:meth:`from_state`).
        self.withheld_paths: frozenset[str] = frozenset()
        #: The augmentation the settings ask for (methods whose settings derive from
        #: AugmentSettings), else None.
        self.augmentation = (Augmentation(self.settings)
                             if isinstance(self.settings, AugmentSettings) else None)
        if self.predicts_emotion and len(label_names) < 2:
            raise UserError(f"{self.name}: needs at least 2 classes, got {list(label_names)}")
        self.label_names = list(label_names) if self.predicts_emotion else []

    @property
    def targets(self) -> tuple[str, ...]:
        """What the model predicts (the settings' ``targets``; the emotion classes for methods
        without that setting)."""
        return tuple(getattr(self.settings, "targets", (EMOTION,)))

    @property
    def predicts_emotion(self) -> bool:
        return EMOTION in self.targets

    @property
    def affect_targets(self) -> tuple[str, ...]:
        """The affect dimensions the model predicts, in the order of ``Predictions.affect``."""
        return tuple(t for t in self.targets if t != EMOTION)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def label_index(self, label: str) -> int:
        """The class index of ``label`` (UserError for a label outside the class set)."""
        try:
            return self.label_names.index(label)
        except ValueError:
            raise UserError(f"label {label!r} is not one of {self.label_names}") from None

    def label_of(self, utterance: Utterance | None) -> int:
        """The class index of ``utterance``'s label; -1 without an utterance (a new
        recording, label unknown) or for a model without emotion classes. CorpusError for an
        utterance without an emotion label when the model predicts the classes."""
        if utterance is None or not self.predicts_emotion:
            return -1
        if utterance.label is None:
            raise CorpusError(f"no emotion label, which the targets {list(self.targets)} "
                              "need")
        return self.label_index(utterance.label)

    def affect_of(self, utterance: Utterance | None) -> tuple[float, ...]:
        """The utterance's values of ``affect_targets`` (NaN where unknown)."""
        return affect_values(utterance, self.affect_targets)

    def item_label(self, item: Any) -> int:
        """The class index an item holds (-1: unknown); override for items without a
        ``label`` attribute."""
        return item.label

    def requirements(self, corpus: Corpus) -> list[str]:
        """Why this method, with these settings, cannot train on ``corpus`` or give a
        meaningful result on it (missing annotations, an optional dependency, ...): one
        sentence a reason, none when it can. Methods with needs of their own (word timings,
        affect annotations, pretrained weights) add theirs to these."""
        reasons = []
        if self.predicts_emotion:
            used = {u.label for u in corpus if u.label is not None}
            if len(used) < 2:
                reasons.append(f"needs utterances of at least 2 emotion classes, has "
                               f"{sorted(used)}")
            unlabelled = sum(u.label is None for u in corpus)
            if unlabelled:
                reasons.append(f"{unlabelled} utterance(s) have no emotion label (leave them "
                               "out with --labels, or train affect targets only)")
        for name in self.affect_targets:
            missing = sum(getattr(u, name) is None for u in corpus)
            if missing:
                reasons.append(f"its targets include {name}, which {missing} of {len(corpus)} "
                               "utterance(s) lack (choose others: --set targets=...)")
        return reasons

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this recipe (plain values and tensors only)."""
        return {"label_names": self.label_names, "settings": self.settings.to_dict(),
                "extra": self.extra_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, paths: Mapping[str, Any] | None = None,
                   stored_paths: bool = False, **overrides: Any) -> "Recipe":
        """The recipe :meth:`state` describes, with what :meth:`fit_extra` learnt restored and
        the settings ``overrides`` changed (e.g. :meth:`segment_overrides` for prediction).
        States written by fastser 0.1 (key "config": only the settings the user changed) are
        completed with ``Settings.defaults_0_1``.

        A checkpoint is data: its path settings (``setting(..., path=True)``: weights to load,
        a cache to write) are kept for the record but not used (:meth:`path` gives None,
        :meth:`required_path` an error saying how to pass them) unless ``paths`` gives them
        again or ``stored_paths`` trusts the stored ones. ``paths`` may hold path settings
        only."""
        if "settings" in state:
            values = dict(state["settings"])
        else:
            values = {**cls.Settings.defaults_0_1, **state["config"]}
        values = {**cls.Settings.upgrade(values), **overrides}
        supplied = cls.check_paths(paths)
        allowed = cls.Settings.path_settings()
        recipe = cls(state["label_names"], **{**values, **supplied})
        if not stored_paths:
            recipe.withheld_paths = frozenset(
                name for name in allowed
                if name not in supplied and values.get(name) is not None)
        recipe.load_extra_state(state.get("extra", {}))
        return recipe

    @classmethod
    def check_paths(cls, paths: Mapping[str, Any] | None) -> dict[str, Any]:
        """``paths`` checked to be path settings of valid values (SettingsError otherwise): what
        :meth:`from_state` accepts besides a checkpoint's state."""
        supplied = dict(paths or {})
        allowed = cls.Settings.path_settings()
        others = sorted(set(supplied) - set(allowed))
        if others:
            raise SettingsError(
                f"{cls.name}: {', '.join(others)} cannot be changed in a trained model; only "
                f"its path settings can be passed again ({', '.join(allowed) or 'it has none'})")
        cls.Settings.build(cls.name, supplied)
        return supplied

    def path(self, name: str) -> Any:
        """The value of the path setting ``name``, or None when it was withheld (stored in a
        checkpoint, not passed again). Recipes read path settings only through this."""
        return None if name in self.withheld_paths else getattr(self.settings, name)

    def required_path(self, name: str) -> Any:
        """:meth:`path` for a path the model cannot do without (weights to load):
        CheckpointError saying how to pass it again when it was withheld."""
        if name in self.withheld_paths:
            raise CheckpointError(
                f"{self.name}: the model was trained with {name}={getattr(self.settings, name)!r}"
                ", and fastser does not use paths stored in a checkpoint: pass it again "
                f"(--set {name}=PATH on the command line, settings={{{name!r}: PATH}} in Python) "
                "or trust the stored paths (--stored-paths, stored_paths=True)")
        return getattr(self.settings, name)

    def extra_state(self) -> dict[str, Any]:
        """What :meth:`fit_extra` learnt from the training set (class weights, a vocabulary).
        Recipes with a ``fit_extra`` override this and :meth:`load_extra_state`."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model for this recipe's settings."""

    # -- items ---------------------------------------------------------------------------------
    def featurize(self, utterances: Sequence[Utterance]) -> list[Any]:
        """One training/evaluation item per utterance (features and targets), from its audio
        file read at 16 kHz mono; with ``speaker_norm``, each speaker's features standardised
        with that speaker's statistics."""
        items = self.raw_items(utterances)
        if self.settings.speaker_norm and items:
            features = standardise_by_speaker([self.item_features(i) for i in items],
                                              [u.speaker for u in utterances])
            items = [self.with_features(i, f) for i, f in zip(items, features)]
        return items

    def raw_items(self, utterances: Sequence[Utterance]) -> list[Any]:
        """The items of ``utterances`` before any per-speaker standardisation (override to
        read them from a cache)."""
        return [self.checked_item(u.audio.load(SAMPLE_RATE), u) for u in utterances]

    def item_from_audio(self, waveform: torch.Tensor, utterance: Utterance | None = None, *,
                        words: Sequence[WordTiming] | None = None) -> Any:
        """One item from a 16 kHz mono waveform (N,).  ``utterance`` supplies the label, the
        word timings and other annotations when known; without it (prediction on a new
        recording) the item's label is -1 and ``words`` gives the word timings, for methods
        that need them.  With ``speaker_norm``, :meth:`standardise_recording`."""
        item = self.checked_item(waveform, utterance, words=words)
        if self.settings.speaker_norm:
            item = self.with_features(item, self.standardise_recording(self.item_features(item)))
        return item

    def standardise_recording(self, features: Tensor) -> Tensor:
        """A lone recording's feature frames (T, ...) under ``speaker_norm``: standardised
        with their own statistics (the recording is its own speaker). Methods whose features
        give a recording no statistics of its own (one vector per utterance) override this."""
        return standardise_by_speaker([features], ["recording"])[0]

    def augmented_copies(self, utterances: Sequence[Utterance]) -> list[list[Any]]:
        """The items of each utterance's augmented training copies (the settings'
        ``speed_perturb`` and ``noise_snr``; no copies without them), read from its audio file
        at 16 kHz; with ``speaker_norm``, each kind of copy standardised per speaker."""
        copies: list[list[Any]] = [[] for _ in utterances]
        if self.augmentation is None or not self.augmentation.makes_copies:
            return copies
        kinds: dict[str, list[tuple[int, Any, str]]] = {}
        for index, utterance in enumerate(utterances):
            waveform = utterance.audio.load(SAMPLE_RATE)
            for kind, copy, copy_utterance in self.augmentation.copies(waveform, utterance):
                kinds.setdefault(kind, []).append(
                    (index, self.checked_item(copy, copy_utterance), utterance.speaker))
        for made in kinds.values():
            items = [item for _, item, _ in made]
            if self.settings.speaker_norm:
                features = standardise_by_speaker([self.item_features(i) for i in items],
                                                  [speaker for _, _, speaker in made])
                items = [self.with_features(i, f) for i, f in zip(items, features)]
            for (index, _, _), item in zip(made, items):
                copies[index].append(item)
        return copies

    def training_items(self, items: Sequence[Any], copies: Sequence[Sequence[Any]] | None, *,
                       seed: int) -> TrainingItems:
        """The training set as each epoch sees it: the items, their augmented copies and
        SpecAugment masks (fastser.train.kit.augment.TrainingItems)."""
        return TrainingItems(items, copies, seed=seed, augmentation=self.augmentation,
                             features=self.item_features, with_features=self.with_features)

    def checked_item(self, waveform: torch.Tensor, utterance: Utterance | None = None, *,
                     words: Sequence[WordTiming] | None = None) -> Any:
        """:meth:`make_item` of a checked waveform; its user errors name the utterance."""
        who = "the recording" if utterance is None else f"utterance {utterance.id!r}"
        waveform = check_waveform(waveform, self.name, who, min_samples=self.min_samples)
        try:
            return self.make_item(waveform, utterance, words=words)
        except UserError as error:
            raise type(error)(f"{self.name}: {who}: {error}") from None

    @abc.abstractmethod
    def make_item(self, waveform: torch.Tensor, utterance: Utterance | None, *,
                  words: Sequence[WordTiming] | None = None) -> Any:
        """The item of a checked 16 kHz float32 waveform (N >= ``min_samples``); raise a
        UserError (without the method and utterance: the caller adds them) for unusable
        input."""

    def item_features(self, item: Any) -> torch.Tensor:
        """The feature frames (T, *feature_shape) of an item that ``speaker_norm``
        standardises."""
        raise NotImplementedError(f"{self.name}: speaker_norm is not available")

    def with_features(self, item: Any, features: torch.Tensor) -> Any:
        """``item`` with its feature frames replaced by ``features``."""
        raise NotImplementedError(f"{self.name}: speaker_norm is not available")

    # -- batches -------------------------------------------------------------------------------
    def collate(self, items: Sequence[Any]) -> Batch:
        """A batch (dict of tensors, with "labels" (B,) int64) of one or more items."""
        if len(items) == 0:
            raise ValueError(f"{self.name}: cannot collate an empty batch")
        return self.make_batch(list(items))

    @abc.abstractmethod
    def make_batch(self, items: list[Any]) -> Batch:
        """The batch of a non-empty list of items."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Scalar training loss, a mean over the batch's utterances."""

    @abc.abstractmethod
    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        """Utterance (and, for segment models, segment) class probabilities."""

    @abc.abstractmethod
    def export_module(self, model: nn.Module) -> nn.Module:
        """A TorchScript-scriptable module mapping :meth:`export_inputs` of a batch to
        utterance class probabilities (B, C)."""

    @abc.abstractmethod
    def export_inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The positional inputs of :meth:`export_module` for a collated batch."""

    def fit_extra(self, train_items: Sequence[Any]) -> None:
        """Statistics taken from the training set before training (class weights, ...)."""

    def train_batches(self, train_items: Sequence[Any], batch_size: int, *, seed: int,
                      rank: int, world_size: int) -> TrainBatches | None:
        """Optional hook: the training steps when the recipe samples its own batches (e.g.
        per-speaker episodes for meta-learning).  None (the default): the trainer shuffles the
        items into batches of ``batch_size`` and collates them."""
        return None

    def step_gradients(self, model: nn.Module, batch: Batch) -> StepGradients | None:
        """Optional hook: this step's loss and gradients when the recipe computes them itself
        (e.g. a meta-learning outer step over per-speaker adapted copies).  ``model`` is the
        bare module (not the DDP wrapper); the trainer scales the gradients by the step's
        share, averages them over processes and takes its optimiser step.  None (the
        default): the trainer back-propagates :meth:`loss`."""
        return None

    def adapt(self, model: nn.Module, items: Sequence[Any]) -> nn.Module:
        """Optional hook: the model that predicts ``items`` (evaluation calls it once per
        evaluated set, before batching). The default is ``model`` itself; a transductive
        method adapts it to the items' speakers first (MMTL's test-time adaptation), so that
        no prediction depends on how the items are batched."""
        return model

    def streaming_features(self) -> StreamingFeatures | None:
        """A fresh live-audio front end of a segment-level method (None: the method scores
        whole utterances and cannot stream; SettingsError: its settings cut segments that
        depend on the whole recording)."""
        return None

    @classmethod
    def segment_overrides(cls, window: float | None = None,
                          hop: float | None = None) -> dict[str, float]:
        """The settings that make prediction score segments of ``window`` seconds every
        ``hop`` seconds (each None: as trained); SettingsError for a method without
        segments."""
        given = {key: value for key, value in (("window", window), ("hop", hop))
                 if value is not None}
        if not given:
            return {}
        if cls.segment_settings is None:
            raise SettingsError(f"{cls.name} scores whole utterances: a segment window and "
                                "hop apply to segment-level methods only")
        names = dict(zip(("window", "hop"), cls.segment_settings))
        return {names[key]: value for key, value in given.items()}

    def embed(self, model: nn.Module, batch: Batch) -> Embeddings:
        """The batch's :class:`Embeddings` (every method of fastser gives them; a method
        without this hook cannot)."""
        raise UserError(f"{self.name}: this method gives no embeddings")

    def segment_spans(self, num_samples: int) -> list[tuple[float, float]] | None:
        """(start, end) seconds of the segments :meth:`predict` scores for a recording of
        ``num_samples`` samples at 16 kHz (segment models), or None."""
        return None

    def example_batch(self, seconds: Sequence[float] = (3.0, 2.5)) -> Batch:
        """A batch of utterances of low noise, one per entry of ``seconds``, for tracing and
        exporting (two by default, so that exporting keeps the batch dimension dynamic) and
        for checking exported files."""
        gen = torch.Generator().manual_seed(0)
        waves = [0.05 * torch.randn(round(s * SAMPLE_RATE), generator=gen) for s in seconds]
        return self.collate([self.item_from_audio(w) for w in waves])

    def epoch_logs(self) -> dict[str, Any]:
        """Counters the recipe kept during the last epoch (reported, then reset)."""
        return {}


def move_to(batch: Batch, device: torch.device) -> Batch:
    """The batch with every tensor (also inside lists and tuples) on ``device``."""

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return move(batch)
