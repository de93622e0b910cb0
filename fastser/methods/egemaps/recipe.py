"""The classical baseline ("egemaps"): openSMILE eGeMAPSv02 functionals + a scikit-learn linear
classifier, in fastser's harness (``fastser train/cv/eval/predict/export --model egemaps``), so
that every results table can carry the reference row every SER researcher runs first.

Features: the 88 eGeMAPSv02 functionals of the utterance (fastser.methods.egemaps.features),
computed by openSMILE on the 16 kHz waveform resampled to ``analysis_rate`` (the same path for
corpus files, files given to predict and in-memory audio); a corpus' functionals are cached on
disk (``cache``; $FASTSER_CACHE/egemaps, keyed by the files and the analysis rate). With
``speaker_norm`` (on by default for this method) each speaker's functionals are standardised
with that speaker's mean and standard deviation over its utterances; then every functional is
standardised with the training set's statistics (global standardisation, in the model's
buffers).

A lone recording (``fastser predict``, ``Recognizer``) has one vector, so no statistics of its
own: under ``speaker_norm`` it is standardised with the training set's typical speaker (the
mean of the training speakers' means, the root mean of their variances; ``fit_extra``), which
leaves its speaker's own offset in. Expect accuracy between the speaker-normalised and the
unnormalised model's for single recordings; pass several recordings of one speaker through
``featurize`` (``fastser eval``) to normalise them as a speaker.

Classifier (``classifier``): multinomial logistic regression ("logreg", probabilities: its
softmax), a one-vs-rest linear SVM ("linear_svm": LinearSVC) or scikit-learn's classic
one-vs-one SVM with a linear kernel ("svc": SVC(kernel="linear")); the SVMs' probabilities are
the softmax of their class scores (decision scores, uncalibrated: they rank the classes but
are not frequencies). ``class_weighted``: class_weight="balanced". The classifier is fitted in
``fit_extra`` (``Recipe.gradient_trained`` is False: the trainer runs one epoch that only
evaluates and checkpoints) and its weights live in the model
(fastser.methods.egemaps.model.LinearFunctionals), so checkpoints, eval, predict and export
work unchanged. ``implementation`` has no effect (no fused op).

Settings: :class:`EgemapsSettings` (``fastser settings egemaps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.audio.alignment import WordTiming
from fastser.audio.cache import cached_rows
from fastser.audio.io import SAMPLE_RATE
from fastser.data.corpus import Corpus, Utterance
from fastser.data.synthetic import default_cache_dir
from fastser.methods.egemaps.features import (FEATURE_SET, MIN_SECONDS, NUM_FEATURES,
                                              functionals, missing_extra, opensmile_version,
                                              require_extra)
from fastser.methods.egemaps.model import ClassProbabilities, LinearFunctionals
from fastser.train.kit import (ClassWeightSettings, FeatureStats, Preset, Settings, redefault,
                               setting, typical_speaker)
from fastser.train.recipe import Batch, Embeddings, Predictions, Recipe

CLASSIFIERS = ("logreg", "linear_svm", "svc")
#: C of each classifier when the setting c is null (measured on EmoDB, docs: bench/RESULTS.md).
DEFAULT_C = {"logreg": 0.1, "linear_svm": 0.01, "svc": 0.01}
ANALYSIS_RATES = (16000, 22050, 44100, 48000)
CACHE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class EgemapsSettings(ClassWeightSettings):
    speaker_norm: bool = redefault(Settings, "speaker_norm", True)
    class_weighted: bool = redefault(ClassWeightSettings, "class_weighted", True)
    classifier: str = setting("logreg", "logreg: multinomial logistic regression; linear_svm: "
                              "one-vs-rest linear SVM (LinearSVC); svc: one-vs-one SVM with a "
                              "linear kernel", choices=CLASSIFIERS)
    c: float | None = setting(None, "the classifier's inverse regularisation strength C "
                              "(null: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_C.items())
                              + ")", low=0.0, low_open=True)
    analysis_rate: int = setting(48000, "sample rate (Hz) the 16 kHz audio is resampled to "
                                 "before openSMILE analyses it", choices=ANALYSIS_RATES)
    cache: bool = setting(True, "cache a corpus' functionals on disk ($FASTSER_CACHE/egemaps)")


class EgemapsItem(NamedTuple):
    """One utterance: its functionals (D,) float32 (speaker-standardised with
    ``speaker_norm``), the functionals as computed ``raw`` (D,), its speaker ("" for a new
    recording) and its class (-1: unknown)."""

    features: Tensor
    raw: Tensor
    speaker: str
    label: int


class EgemapsRecipe(Recipe):
    name = "egemaps"
    Settings = EgemapsSettings
    presets = {"demo": Preset("the defaults (a linear model, fitted in seconds)")}
    min_samples = round(MIN_SECONDS * SAMPLE_RATE)
    gradient_trained = False
    settings: EgemapsSettings

    def __init__(self, label_names: Sequence[str], **settings: Any) -> None:
        super().__init__(label_names, **settings)
        self.feature_stats: FeatureStats | None = None
        self.recording_stats: FeatureStats | None = None
        self.weight: Tensor | None = None  # (K, D) scores of the fitted classifier
        self.bias: Tensor | None = None  # (K,)
        self.classes: Tensor | None = None  # (P,) the training classes

    def requirements(self, corpus: Corpus) -> list[str]:
        """Besides the classes: the optional opensmile extra."""
        reason = missing_extra()
        return super().requirements(corpus) + ([] if reason is None else [reason])

    # -- items ---------------------------------------------------------------------------------
    def make_item(self, waveform: Tensor, utterance: Utterance | None, *,
                  words: Sequence[WordTiming] | None = None) -> EgemapsItem:
        """The functionals of the waveform; ``words`` are not used."""
        return self._item(functionals(waveform, self.settings.analysis_rate), utterance)

    def _item(self, raw: Tensor, utterance: Utterance | None) -> EgemapsItem:
        return EgemapsItem(raw, raw, "" if utterance is None else utterance.speaker,
                           self.label_of(utterance))

    def raw_items(self, utterances: Sequence[Utterance]) -> list[EgemapsItem]:
        """Items of ``utterances``, their functionals read from (or written to) the disk
        cache with ``cache``."""
        if not (self.settings.cache and utterances):
            return super().raw_items(utterances)
        require_extra()
        key = {"version": CACHE_VERSION, "feature_set": FEATURE_SET,
               "opensmile": opensmile_version(), "analysis_rate": self.settings.analysis_rate,
               "read_at": SAMPLE_RATE}

        def compute(index: int) -> np.ndarray:
            utterance = utterances[index]
            waveform = utterance.audio.load(SAMPLE_RATE)
            return self.checked_item(waveform, utterance).raw.numpy()

        rows = cached_rows(default_cache_dir() / "egemaps", key, [u.audio for u in utterances],
                           compute)
        return [self._item(torch.from_numpy(row.copy()), u) for row, u in zip(rows, utterances)]

    def item_features(self, item: EgemapsItem) -> Tensor:
        return item.features[None]

    def with_features(self, item: EgemapsItem, features: Tensor) -> EgemapsItem:
        return item._replace(features=features[0])

    def standardise_recording(self, features: Tensor) -> Tensor:
        """A lone recording's functionals (1, D), standardised with the training set's typical
        speaker (unchanged before ``fit_extra``)."""
        if self.recording_stats is None:
            return features
        return self.recording_stats.apply(features)

    # -- fitting -------------------------------------------------------------------------------
    def fit_extra(self, train_items: Sequence[EgemapsItem]) -> None:
        """The training set's statistics (global standardisation; the typical speaker for lone
        recordings) and the classifier."""
        labels = np.array([item.label for item in train_items])
        if labels.size == 0 or (labels < 0).any():
            raise ValueError("egemaps: fit_extra needs labelled training items")
        if self.settings.speaker_norm:
            self.recording_stats = typical_speaker([item.raw[None] for item in train_items],
                                                   [item.speaker for item in train_items])
        features = [item.features[None] for item in train_items]
        self.feature_stats = FeatureStats.fit(features)
        inputs = torch.cat([self.feature_stats.apply(f) for f in features]).double().numpy()
        self.weight, self.bias, self.classes = self._fit_classifier(inputs, labels)

    def _fit_classifier(self, inputs: np.ndarray, labels: np.ndarray
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """(weight (K, D), bias (K,), classes (P,)) of the classifier fitted on standardised
        inputs (N, D) and labels (N,)."""
        require_extra()
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import SVC, LinearSVC

        s = self.settings
        c = DEFAULT_C[s.classifier] if s.c is None else s.c
        balance = "balanced" if s.class_weighted else None
        if s.classifier == "logreg":
            model = LogisticRegression(C=c, class_weight=balance, max_iter=5000)
        elif s.classifier == "linear_svm":
            model = LinearSVC(C=c, class_weight=balance, max_iter=20000, random_state=0)
        else:
            model = SVC(kernel="linear", C=c, class_weight=balance)
        model.fit(inputs, labels)
        weight = torch.tensor(np.array(model.coef_), dtype=torch.float32)
        bias = torch.tensor(np.atleast_1d(model.intercept_), dtype=torch.float32)
        if len(model.classes_) == 2:  # one binary score s, > 0 for the second class
            if s.classifier == "svc":  # the pair's score, > 0 for its first class
                weight, bias = -weight, -bias
            else:  # scores (0, s)
                weight = torch.cat([torch.zeros_like(weight), weight])
                bias = torch.cat([torch.zeros_like(bias), bias])
        return weight, bias, torch.as_tensor(model.classes_, dtype=torch.int64)

    def extra_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.feature_stats is not None:
            extra.update(self.feature_stats.state())
        if self.recording_stats is not None:
            extra.update({"recording_mean": self.recording_stats.mean,
                          "recording_std": self.recording_stats.std})
        if self.weight is not None:
            extra.update({"weight": self.weight, "bias": self.bias, "classes": self.classes})
        return extra

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.feature_stats = FeatureStats.from_state(state)
        if "recording_mean" in state:
            self.recording_stats = FeatureStats(state["recording_mean"], state["recording_std"])
        self.weight, self.bias = state.get("weight"), state.get("bias")
        self.classes = state.get("classes")

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The fitted classifier (all-zero scores over every class before ``fit_extra``)."""
        classes = (torch.arange(self.num_classes) if self.classes is None else self.classes)
        model = LinearFunctionals(NUM_FEATURES, self.num_classes, classes,
                                  one_vs_one=self.settings.classifier == "svc")
        with torch.no_grad():
            if self.feature_stats is not None:
                model.feature_mean.copy_(self.feature_stats.mean)
                model.feature_std.copy_(self.feature_stats.std)
            if self.weight is not None:
                model.weight.copy_(self.weight)
                model.bias.copy_(self.bias)
        return model

    # -- batches -------------------------------------------------------------------------------
    def make_batch(self, items: list[EgemapsItem]) -> Batch:
        """``features`` (B, D), ``labels`` (B,)."""
        return {"features": torch.stack([item.features for item in items]),
                "labels": torch.tensor([item.label for item in items], dtype=torch.long)}

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """Cross-entropy of the softmax of the class scores (reported, not optimised)."""
        return F.cross_entropy(model(batch["features"]), batch["labels"])

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        return Predictions(model(batch["features"]).softmax(dim=1))

    def embed(self, model: nn.Module, batch: Batch) -> Embeddings:
        """The standardised functionals (B, 88) the linear classifier reads."""
        return Embeddings(model.standardise(batch["features"]))

    def export_module(self, model: nn.Module) -> nn.Module:
        return ClassProbabilities(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return (batch["features"],)
