"""The MSTR recipe ("mstr") and its vanilla-Transformer baseline ("transformer").

Both train an utterance classifier over frame features with cross-entropy and, with affect
``targets`` (valence, arousal, dominance), a regression head for dimensional emotion trained
on 1 - CCC (``affect_loss``: CCC is how dimensional SER is scored, so it is optimised
directly, as the MSP-Podcast challenge baselines do; the values standardised with the training
set's statistics, :class:`fastser.train.kit.affect.AffectScale`); they differ only in the
blocks' attention: MSTR's fused fractal attention (fastser.methods.mstr.model.MSTR) or
full softmax self-attention (fastser.methods.mstr.transformer.VanillaTransformer).  The
baseline is a recipe of its own so that ``fastser train/cv --model transformer`` runs it with
the same features, sizes and settings, and the two compare one to one.

Features (``features``): MFCCs (fastser.audio.features.MFCC, ``n_mfcc`` coefficients, 25 ms
window) at a 20 ms hop, the frame rate of SSL models, or the layer outputs of an SSL front
end (``features="ssl"``: the paper's HuBERT-large features, through the front end, settings
and disk cache SAP uses, :mod:`fastser.train.kit.ssl`; the last layer or a learned weighted
sum of all layers, ``layer``).  The model's input projection maps the frame size to
``embed_dim``.  Features are standardised per coefficient (per layer and dimension for SSL
layer outputs) with the mean and standard deviation of the training frames (``fit_extra``,
:class:`fastser.train.kit.FeatureStats`; stored in ``extra_state``, applied in ``collate``;
identity before fitting).  With ``speaker_norm`` (the demo preset's setting) every speaker's
frames are first standardised with that speaker's own statistics by the recipe base class (no
labels needed, so test speakers too; a lone recording is its own speaker).  A batch is padded
frames (B, T, *frame_shape) + lengths (B,) + labels (B,) + affect (B, K) values of the affect
targets.

Settings: :class:`MSTRSettings` and :class:`TransformerSettings` (``fastser settings mstr`` /
``fastser settings transformer`` list them with their defaults).  ``implementation=
"reference"`` runs MSTR on the reference fractal attention op instead of the fused one, and
the baseline's attention as matmul, masked softmax, matmul instead of
``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import numpy as np

from fastser.audio.alignment import WordTiming
from fastser.audio.features import MFCC
from fastser.audio.io import SAMPLE_RATE
from fastser.audio.ssl import VADSettings
from fastser.data.collate import pad_sequences
from fastser.data.corpus import Corpus, Utterance
from fastser.errors import SettingsError
from fastser.losses.affect import AFFECT_LOSSES
from fastser.methods.mstr.model import MSTR
from fastser.methods.mstr.transformer import (POSITIONAL_ENCODINGS, ClassProbabilities,
                                              CombinedLayers, VanillaTransformer, masked_mean)
from fastser.train.kit import (AugmentSettings, ClassWeightSettings, FeatureStats, Preset,
                               class_weights, redefault, setting)
from fastser.train.kit.affect import (EMOTION, TARGETS_DOC, AffectScale, check_targets,
                                      targets_loss)
from fastser.train.kit.ssl import SSLFeatures, SSLSettings
from fastser.train.recipe import Batch, Embeddings, Predictions, Recipe

#: The MFCC analysis window; an utterance needs at least one.
WINDOW_MS = 25.0
#: The mel bands the MFCCs are taken from (n_mfcc can be at most this).
N_MELS = 64
#: Frame features: MFCCs or an SSL front end's layer outputs.
FEATURES = ("mfcc", "ssl")


@dataclass(frozen=True, kw_only=True)
class TransformerSettings(SSLSettings, AugmentSettings, ClassWeightSettings):
    """The settings of the vanilla-Transformer baseline (and, with p and levels, of MSTR): the
    SSL front end's (:class:`~fastser.train.kit.ssl.SSLSettings`, with ``features="ssl"``),
    augmentation, class weights and the model's."""

    features: str = setting("mfcc", "frame features: mfcc (n_mfcc coefficients every hop_ms) or "
                            "ssl (the SSL front end's layer outputs, ssl_* and layer settings, "
                            "20 ms frames)", choices=FEATURES)
    n_mfcc: int = setting(40, f"MFCC coefficients per {WINDOW_MS:g} ms frame (at most the "
                          f"{N_MELS} mel bands)", low=1, high=N_MELS)
    hop_ms: float = setting(20.0, "milliseconds between MFCC frames (20: the 50 frames/s of SSL "
                            "models)", low=0.0, low_open=True)
    # The defaults (a small model, speaker_norm) are the measured ones on real speech
    # (bench/RESULTS.md, "Default settings on real speech"); the paper's sizes are the paper
    # preset's.
    speaker_norm: bool = redefault(AugmentSettings, "speaker_norm", True)
    embed_dim: int = setting(64, "model dimension (the input projection maps the frame "
                             "features to it; the paper's: 1024)", low=1)
    num_heads: int = setting(4, "attention heads (divides embed_dim; the paper's: 16)", low=1)
    num_blocks: int = setting(2, "encoder blocks (the paper's: 4)", low=1)
    ffn_dim: int = setting(128, "hidden size of each block's feed-forward network", low=1)
    dropout: float = setting(0.3, "dropout probability (the paper's: 0.1)", low=0.0, high=1.0,
                             high_open=True)
    #: fastser 0.1's defaults: the paper's sizes, no per-speaker standardisation.
    defaults_0_1 = {"speaker_norm": False, "embed_dim": 1024, "num_heads": 16, "num_blocks": 4,
                    "ffn_dim": 2048, "dropout": 0.1}
    classifier_hidden: tuple[int, ...] | None = setting(
        None, "the two hidden sizes of the 3-layer classifier (null: embed_dim/2, embed_dim/4)",
        low=1)
    positional_encoding: str = setting(
        "none", "added to the projected input frames: sinusoidal (the original Transformer's) "
        "or none (then the baseline's full attention sees no frame order)",
        choices=POSITIONAL_ENCODINGS)
    targets: tuple[str, ...] = setting((EMOTION,), TARGETS_DOC)
    loss_weights: tuple[float, ...] | None = setting(
        None, "weight of each target's loss, in targets order (null: 1 each)", low=0.0)
    affect_loss: str = setting("ccc", "loss of each affect target (ccc: 1 - CCC, the metric "
                               "of dimensional SER; mae; mse)", choices=AFFECT_LOSSES)

    def check(self, method: str) -> None:
        super().check(method)
        check_targets(method, self.targets, self.loss_weights)
        if round(self.hop_ms * SAMPLE_RATE / 1000) < 1:
            raise SettingsError(f"{method}: setting hop_ms ({self.hop_ms}) is shorter than one "
                                f"sample at {SAMPLE_RATE} Hz")
        if self.embed_dim % self.num_heads:
            raise SettingsError(f"{method}: setting num_heads ({self.num_heads}) must divide "
                                f"embed_dim ({self.embed_dim})")
        if self.classifier_hidden is not None and len(self.classifier_hidden) != 2:
            raise SettingsError(f"{method}: setting classifier_hidden must be two sizes (the "
                                f"classifier's hidden layers) or null, got "
                                f"{list(self.classifier_hidden)}")


@dataclass(frozen=True, kw_only=True)
class MSTRSettings(TransformerSettings):
    """The settings of MSTR: the baseline's and the fractal attention's scales."""

    class_weighted: bool = redefault(ClassWeightSettings, "class_weighted", True)
    defaults_0_1 = {**TransformerSettings.defaults_0_1, "class_weighted": False}

    p: int = setting(3, "fractal attention: frames per window and pooling factor between "
                     "scales", low=2)
    levels: int = setting(4, "fractal attention: number of temporal scales", low=1)


#: The settings every model of this folder takes as keyword arguments.
MODEL_KEYS = ("embed_dim", "num_heads", "num_blocks", "ffn_dim", "dropout", "classifier_hidden",
              "implementation", "positional_encoding")

DEMO = Preset("small, regularised, per-speaker standardised model for the synthetic corpus "
              "(held-out UA 0.67 / 0.74 / 0.65 over seeds 0-2)",
              settings={"embed_dim": 64, "num_heads": 4, "num_blocks": 2, "ffn_dim": 128,
                        "dropout": 0.3, "speaker_norm": True, "class_weighted": False},
              training={"epochs": 30, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.05})
#: The training of the default settings (measured on real speech, bench/RESULTS.md).
TRAINING_DEFAULTS = {"epochs": 30, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.05}
#: Sec. 3.2 and Table 1 (IEMOCAP); filled in (docs/methods.md): the last HuBERT layer, the
#: sinusoidal positional encoding, a constant learning rate, no clipping, no weight decay, model
#: selection on validation UA. FFN 1024 gives Table 2's 27.0M parameters (26.9M counted).
PAPER = Preset("the paper's setting on IEMOCAP (Sec. 3.2, Table 1): HuBERT-large features "
               "(facebook/hubert-large-ll60k, or --set ssl_path=FOLDER), 4 blocks of 1024 with "
               "16 heads, Adam 1e-4, 150 epochs of 32; `cv --protocol session --seeds 0-9` "
               "(docs/methods.md)",
               settings={"speaker_norm": False, "class_weighted": False, "dropout": 0.1,
                         "features": "ssl", "ssl_kind": "hubert",
                         "ssl_path": "facebook/hubert-large-ll60k", "layer": "last",
                         "embed_dim": 1024, "num_heads": 16, "num_blocks": 4, "ffn_dim": 1024,
                         "positional_encoding": "sinusoidal"},
               training={"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
                         "schedule": "constant", "warmup_fraction": 0.0, "grad_clip": None,
                         "epochs": 150, "batch_size": 32, "monitor": "ua"})


class FrameItem(NamedTuple):
    """One utterance: its feature frames (T, *frame_shape): MFCCs (T, n_mfcc) float32, or SSL
    layer outputs (T, *layer_shape) in the cache dtype (memory-mapped from the cache; float32
    after per-speaker standardisation), its class (-1: unknown), its values of the affect
    targets (NaN where unknown) and its id."""

    frames: Tensor | np.ndarray
    label: int
    affect: tuple[float, ...] = ()
    id: str = "the recording"


class TransformerRecipe(Recipe):
    """MSTR's vanilla-Transformer baseline: MFCC or SSL frames, full softmax self-attention,
    cross-entropy.  :class:`MSTRRecipe` is this recipe with MSTR's fractal attention."""

    name = "transformer"
    Settings = TransformerSettings
    training_defaults = TRAINING_DEFAULTS
    # bf16 autocast made its whole cv on a CPU with AVX512-BF16 slower (bench/RESULTS.md)
    cpu_bf16 = False
    presets = {"demo": DEMO, "paper": PAPER}
    min_samples = round(WINDOW_MS * SAMPLE_RATE / 1000)  # one MFCC frame
    settings: TransformerSettings

    def __init__(self, label_names: Sequence[str], **settings: Any) -> None:
        super().__init__(label_names, **settings)
        self.mfcc = MFCC(SAMPLE_RATE, self.settings.n_mfcc, win_ms=WINDOW_MS,
                         hop_ms=self.settings.hop_ms, n_mels=N_MELS)
        # the front end SAP uses, with the VAD masks of its cache (so both share it)
        self.ssl = SSLFeatures(self, VADSettings())
        self.feature_stats: FeatureStats | None = None
        self.class_weights: Tensor | None = None
        self.affect_scale: AffectScale | None = None

    @property
    def on_ssl(self) -> bool:
        return self.settings.features == "ssl"

    @property
    def loss_weights(self) -> tuple[float, ...]:
        return self.settings.loss_weights or (1.0,) * len(self.targets)

    def requirements(self, corpus: Corpus) -> list[str]:
        return super().requirements(corpus) + (
            self.settings.pretrained_requirements() if self.on_ssl else [])

    # -- features ------------------------------------------------------------------------------
    def raw_items(self, utterances: Sequence[Utterance]) -> list[FrameItem]:
        """SSL features come from (or go to) the disk cache (``cache``); MFCCs from the audio."""
        if not (self.on_ssl and self.settings.cache) or not utterances:
            return super().raw_items(utterances)
        return [self._item(features, utterance) for (features, _), utterance
                in zip(self.ssl.cached(utterances), utterances)]

    def make_item(self, waveform: Tensor, utterance: Utterance | None, *,
                  words: Sequence[WordTiming] | None = None) -> FrameItem:
        """MFCC frames, or SSL layer outputs of the waveform cut to ``max_seconds``; ``words``
        are not used."""
        frames = (self.ssl.layer_outputs(self.ssl.truncate(waveform)) if self.on_ssl
                  else self.mfcc(waveform))
        return self._item(frames, utterance)

    def _item(self, frames: Tensor | np.ndarray, utterance: Utterance | None) -> FrameItem:
        return FrameItem(frames, self.label_of(utterance), self.affect_of(utterance),
                         "the recording" if utterance is None else utterance.id)

    def item_features(self, item: FrameItem) -> Tensor:
        return _float32(item.frames)

    def with_features(self, item: FrameItem, features: Tensor) -> FrameItem:
        return item._replace(frames=features)

    def fit_extra(self, train_items: Sequence[FrameItem]) -> None:
        """Per-coefficient mean and standard deviation of every training frame, the class
        weights of the training labels (``class_weighted``), the scale of the affect targets
        and, on SSL features, the hash of the front end the model sees."""
        self.feature_stats = FeatureStats.fit([item.frames for item in train_items])
        if self.settings.class_weighted and self.predicts_emotion:
            self.class_weights = class_weights([item.label for item in train_items],
                                               self.num_classes)
        if self.affect_targets:
            self.affect_scale = AffectScale.fit(self.name, self.affect_targets,
                                                [item.affect for item in train_items],
                                                [item.id for item in train_items])
        if self.on_ssl:
            self.ssl.front_end  # noqa: B018  (records the front end's weights hash)

    def extra_state(self) -> dict[str, Any]:
        state = {} if self.feature_stats is None else self.feature_stats.state()
        if self.class_weights is not None:
            state["class_weights"] = self.class_weights
        if self.affect_scale is not None:
            state["affect_scale"] = self.affect_scale.state()
        if self.ssl.weights_hash is not None:
            state["front_end_hash"] = self.ssl.weights_hash
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.feature_stats = FeatureStats.from_state(state)
        self.class_weights = state.get("class_weights")
        if "affect_scale" in state:
            self.affect_scale = AffectScale.from_state(state["affect_scale"])
        self.ssl.weights_hash = state.get("front_end_hash")

    # -- model ---------------------------------------------------------------------------------
    def model_settings(self) -> dict[str, Any]:
        """The model's keyword arguments taken from the settings."""
        return {**{key: getattr(self.settings, key) for key in MODEL_KEYS},
                "affect_dims": len(self.affect_targets)}

    def input_dim(self) -> int:
        """The frame size the model reads: n_mfcc, or the SSL front end's hidden size."""
        return self.ssl.front_end.hidden_size if self.on_ssl else self.settings.n_mfcc

    def frame_model(self, model: nn.Module) -> nn.Module:
        """``model`` behind the learned weighted sum of SSL layers where the features are all
        layers (``layer="weighted"``)."""
        combine = self.ssl.layer_combiner() if self.on_ssl else None
        return model if combine is None else CombinedLayers(combine, model)

    def build_model(self) -> nn.Module:
        return self.frame_model(VanillaTransformer(self.input_dim(), self.num_classes,
                                                   **self.model_settings()))

    # -- batches -------------------------------------------------------------------------------
    def make_batch(self, items: list[FrameItem]) -> Batch:
        """Standardised frames padded with zeros (B, T, *frame_shape) float32, lengths (B,),
        labels (B,), affect (B, K) values of the affect targets (NaN where unknown)."""
        frames = [_float32(item.frames) for item in items]
        if self.feature_stats is not None:
            frames = [self.feature_stats.apply(f) for f in frames]
        features, lengths = pad_sequences(frames)
        return {"features": features, "lengths": lengths,
                "labels": torch.tensor([item.label for item in items], dtype=torch.long),
                "affect": torch.tensor([item.affect for item in items],
                                       dtype=torch.float32).reshape(len(items), -1)}

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """Cross-entropy of the classes (class-weighted with ``class_weighted``) and
        ``affect_loss`` of each affect target on standardised values, weighted by
        ``loss_weights``."""
        outputs = model(batch["features"], batch["lengths"])
        class_loss = None
        if self.predicts_emotion:
            per_class = (None if self.class_weights is None
                         else self.class_weights.to(outputs.device))
            class_loss = F.cross_entropy(outputs[:, :self.num_classes].float(), batch["labels"],
                                         weight=per_class)
        return targets_loss(self.targets, self.loss_weights, class_loss,
                            outputs[:, self.num_classes:], batch["affect"], self.affect_scale,
                            self.settings.affect_loss)

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        outputs = model(batch["features"], batch["lengths"]).float()
        affect = (self.affect_scale.restore(outputs[:, self.num_classes:])
                  if self.affect_targets else None)
        return Predictions(outputs[:, :self.num_classes].softmax(dim=1), affect=affect)

    def embed(self, model: nn.Module, batch: Batch) -> Embeddings:
        """The last block's frames and their mean over each utterance's valid frames, which
        the classifier reads."""
        frames, lengths = model.encode(batch["features"], batch["lengths"])
        return Embeddings(masked_mean(frames, lengths), frames=frames, frame_lengths=lengths,
                          frame_hop=self.mfcc.hop_length, frame_length=self.mfcc.frame_length)

    def export_module(self, model: nn.Module) -> nn.Module:
        return ClassProbabilities(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return batch["features"], batch["lengths"]


class MSTRRecipe(TransformerRecipe):
    """MSTR: the baseline's features, sizes and skeleton with fractal attention over ``levels``
    temporal scales of windows of ``p`` frames."""

    name = "mstr"
    Settings = MSTRSettings
    # the last epoch: measured better than the best validation epoch on real speech
    training_defaults = {**TRAINING_DEFAULTS, "select": "last"}
    # unlike its baseline's, its whole cv ran faster under CPU bf16 (bench/RESULTS.md)
    cpu_bf16 = True
    settings: MSTRSettings

    def build_model(self) -> nn.Module:
        return self.frame_model(MSTR(self.input_dim(), self.num_classes, p=self.settings.p,
                                     levels=self.settings.levels, **self.model_settings()))


def _float32(frames: Tensor | np.ndarray) -> Tensor:
    """Frames (MFCCs, or cached SSL layer outputs, possibly read-only memory-mapped) as a
    float32 tensor."""
    if isinstance(frames, np.ndarray):
        return torch.from_numpy(np.array(frames, dtype=np.float32))
    return frames.float()
