"""The SAP recipe: SSL front end + VAD speech mask + the SAP head (fastser.methods.sap.model),
trained on 0.5 · class-weighted CE + 0.25 · MAE(valence) + 0.25 · MAE(arousal), the paper's
multitask loss (settings ``targets``, ``loss_weights``, ``affect_loss``). ``targets`` may be any
of the emotion classes and the affect dimensions valence, arousal, dominance: affect only is
dimensional emotion recognition. Affect values are learnt standardised with the training set's
statistics (:class:`fastser.train.kit.affect.AffectScale`, stored in the checkpoint) and
predicted on the corpus' scale.

The front end is a ``transformers`` SSL model (WavLM, HuBERT, wav2vec 2.0; its settings and
building are shared with MSTR: :mod:`fastser.train.kit.ssl`): pretrained weights (``ssl_path``:
a local directory written by ``save_pretrained``, or a model name that ``transformers`` loads
where the machine has network access), or random weights of a configuration (``ssl_config``:
a preset of :data:`~fastser.train.kit.ssl.SSL_PRESETS` or the configuration's keyword
arguments) drawn from ``ssl_seed``, with a :class:`~fastser.train.kit.ssl.RandomSSLWeightsWarning`.
Audio past ``max_seconds`` is cut off first (the paper's 19 s). The head sees the last layer
or a learned weighted sum of all layers (``layer``), and pools GAP and SAP, or one of them
(``pooling``, Table 1). VAD ("voice activity detection", webrtcvad) marks the SSL frames that
hold speech; the head's self-attention pools only those.

Frozen front ends (the default): every utterance's SSL layer outputs are computed once, when
the corpus is featurised, and cached on disk (``cache``, ``cache_dir``, ``cache_dtype``): a
memory-mapped array per corpus keyed by the front end's weights and the audio files, so each
epoch, and every later run on the same corpus, costs only the head. Features computed for a
single recording are rounded to the cache dtype too, so cached and fresh features agree. With
``speaker_norm``, each speaker's layer outputs are standardised with that speaker's statistics
(a lone recording given to ``item_from_audio`` is its own speaker).
Fine-tuned front ends (``frozen=False``): items hold the 16 kHz waveform and the model runs the
front end on every batch.

Audio is 16 kHz mono and at least one SSL frame long (400 samples, 25 ms).

Settings: :class:`SAPSettings` (``fastser settings sap`` lists them with their defaults);
``implementation="reference"`` pools utterance by utterance instead of the batched pooling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.audio.alignment import WordTiming
from fastser.audio.ssl import SSLFrontEnd, VADSettings, speech_mask
from fastser.audio.vad import SSL_RECEPTIVE_FIELD, VAD_FRAME_MS
from fastser.data.collate import pad_sequences
from fastser.data.corpus import Corpus, Utterance
from fastser.errors import SettingsError, UserError
from fastser.losses.affect import AFFECT_LOSSES
from fastser.methods.sap.model import POOLINGS, SAPHead, SAPModel
from fastser.train.kit import AugmentSettings, Preset, class_weights, setting
from fastser.train.kit.affect import (EMOTION, TARGETS_DOC, AffectScale, check_targets,
                                      targets_loss)
from fastser.train.kit.ssl import SSLFeatures, SSLSettings
from fastser.train.recipe import Batch, Embeddings, Predictions, Recipe


@dataclass(frozen=True, kw_only=True)
class SAPSettings(SSLSettings, AugmentSettings):
    """SAP's settings: the SSL front end's (:class:`~fastser.train.kit.ssl.SSLSettings`),
    augmentation and its own."""

    frozen: bool = setting(True, "keep the front end's weights fixed (features cached once); "
                           "false: fine-tune it with the head")
    vad_frame_ms: int = setting(30, "webrtcvad frame length in milliseconds",
                                choices=VAD_FRAME_MS)
    vad_aggressiveness: int = setting(3, "webrtcvad aggressiveness (3: the most non-speech "
                                      "filtered out)", low=0, high=3)
    heads: int = setting(4, "attention heads of the SAP self-attention (divides the SSL "
                         "hidden size)", low=1)
    proj_dim: int = setting(32, "width of the projection of [GAP, SAP] before the outputs",
                            low=1)
    dropout: float = setting(0.1, "dropout probability after the projection", low=0.0,
                             high=1.0, high_open=True)
    attention_dropout: float = setting(0.0, "dropout probability of the attention weights",
                                       low=0.0, high=1.0, high_open=True)
    pooling: str = setting("gap+sap", "what the projection reads: gap+sap (SR = [GAP, SAP], the "
                           "paper's method) or one of them (Table 1's GAP and SAP rows)",
                           choices=POOLINGS)
    sr_norm: bool = setting(False, "standardise [GAP, SAP] over the batch (batch norm without "
                            "affine parameters; an addition to the paper)")
    targets: tuple[str, ...] = setting((EMOTION, "valence", "arousal"),
                                       TARGETS_DOC + "; the paper's: emotion, valence, arousal")
    loss_weights: tuple[float, ...] | None = setting(
        None, "weight of each target's loss, in targets order (null: the paper's 0.5 for the "
        "class-weighted emotion CE and 0.25 for each affect dimension)", low=0.0)
    affect_loss: str = setting("mae", "loss of each affect dimension (mae: the paper's; ccc: "
                               "1 - CCC, the metric of dimensional SER)", choices=AFFECT_LOSSES)

    def check(self, method: str) -> None:
        super().check(method)
        check_targets(method, self.targets, self.loss_weights)
        if self.speaker_norm and not self.frozen:
            raise SettingsError(f"{method}: setting speaker_norm standardises cached SSL "
                                "features, so it needs a frozen front end (frozen=True)")
        if (self.time_masks or self.feature_masks) and not self.frozen:
            raise SettingsError(f"{method}: settings time_masks / feature_masks mask SSL "
                                "feature frames, so they need a frozen front end (frozen=True)")
        hidden = self.hidden_size()
        if hidden is not None and hidden % self.heads:
            raise SettingsError(f"{method}: setting heads ({self.heads}) must divide the SSL "
                                f"hidden size ({hidden})")

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Settings of earlier releases: ``regression`` (valence/arousal regressors, trained
        when their loss weights were not both 0) became ``targets``."""
        values = super().upgrade(values)
        if "regression" in values:
            regression = values.pop("regression")
            if not isinstance(regression, bool):
                raise SettingsError(f"sap: setting regression (now: targets): expected "
                                    f"true/false, got {regression!r}")
            weights = tuple(values.get("loss_weights") or (0.5, 0.25, 0.25))
            if regression and any(weights[1:]):
                values.setdefault("targets", (EMOTION, "valence", "arousal"))
            else:
                values.setdefault("targets", (EMOTION,))
                values["loss_weights"] = weights[:1]
        return values


@dataclass
class SAPItem:
    """One utterance: ``inputs`` are its SSL layer outputs (F, *layer_shape) in the cache
    dtype, or float32 after per-speaker standardisation (frozen front end), or its 16 kHz
    waveform (N,) float32 (fine-tuning); ``speech`` (F,) bool VAD mask; ``affect``: its
    values of the recipe's affect targets (NaN where unknown)."""

    inputs: np.ndarray | torch.Tensor
    speech: torch.Tensor
    label: int
    affect: tuple[float, ...]
    id: str


class SAPRecipe(Recipe):
    name = "sap"
    Settings = SAPSettings
    # A frozen random "small" WavLM (no download) with per-speaker standardisation of its
    # layer outputs, regularised: held-out UA 0.64 / 0.67 / 0.56 over seeds 0-2 (RESULTS.md).
    presets = {"demo": Preset("frozen random 'small' WavLM, per-speaker standardised layer "
                              "outputs, more dropout",
                              settings={"ssl_config": "small", "layer": "weighted",
                                        "speaker_norm": True, "dropout": 0.3},
                              training={"epochs": 20, "batch_size": 16, "lr": 2e-3,
                                        "weight_decay": 0.05}),
               # Sec. 4.1; filled in (docs/methods.md): the last layer, the optimiser and
               # clipping of HuggingFace's Trainer (AdamW, no weight decay, norm 1.0)
               "paper": Preset("the paper's SAP (Sec. 3-4.1): WavLM Large fine-tuned "
                               "(microsoft/wavlm-large, or --set ssl_path=FOLDER), 19 s, SR, "
                               "0.5/0.25/0.25, 30 epochs of 64 at 3e-5 with warm-up 0.1 and "
                               "cosine decay, early stopping on the validation loss "
                               "(docs/methods.md)",
                               settings={"ssl_kind": "wavlm",
                                         "ssl_path": "microsoft/wavlm-large", "layer": "last",
                                         "frozen": False, "max_seconds": 19.0,
                                         "pooling": "gap+sap", "proj_dim": 32,
                                         "targets": (EMOTION, "valence", "arousal"),
                                         "loss_weights": (0.5, 0.25, 0.25),
                                         "affect_loss": "mae",
                                         "sr_norm": False},
                               training={"optimizer": "adamw", "weight_decay": 0.0,
                                         "lr": 3e-5, "batch_size": 64, "epochs": 30,
                                         "warmup_fraction": 0.1, "schedule": "warmup_cosine",
                                         "grad_clip": 1.0, "patience": 5, "monitor": "loss"})}
    min_samples = SSL_RECEPTIVE_FIELD
    settings: SAPSettings

    def __init__(self, label_names: Sequence[str], **settings: Any) -> None:
        super().__init__(label_names, **settings)
        self.class_weights: list[float] | None = None
        self.affect_scale: AffectScale | None = None
        self.ssl = SSLFeatures(self, self.vad)
        self._fallbacks: torch.Tensor | None = None

    @property
    def loss_weights(self) -> tuple[float, ...]:
        """The weight of each target's loss (the setting, or the paper's)."""
        return self.settings.loss_weights or tuple(0.5 if t == EMOTION else 0.25
                                                   for t in self.targets)

    # -- front end -----------------------------------------------------------------------------

    def requirements(self, corpus: Corpus) -> list[str]:
        """Besides the targets' annotations: pretrained SSL weights."""
        return super().requirements(corpus) + self.settings.pretrained_requirements()

    @property
    def vad(self) -> VADSettings:
        return VADSettings(self.settings.vad_frame_ms, self.settings.vad_aggressiveness)

    @property
    def front_end(self) -> SSLFrontEnd:
        """The frozen front end that featurises audio (:class:`SSLFeatures`)."""
        return self.ssl.front_end

    # -- state ---------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Class weights, the affect scale and the frozen front end's hash, from
        :meth:`fit_extra`."""
        return {"class_weights": self.class_weights, "front_end_hash": self.ssl.weights_hash,
                "affect_scale": None if self.affect_scale is None else self.affect_scale.state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.class_weights = state.get("class_weights")
        self.ssl.weights_hash = state.get("front_end_hash")
        if state.get("affect_scale") is not None:
            self.affect_scale = AffectScale.from_state(state["affect_scale"])
        elif state.get("va_mean") is not None:  # fastser 0.1: values learnt unscaled
            self.affect_scale = AffectScale.identity(self.affect_targets)

    def fit_extra(self, train_items: Sequence[SAPItem]) -> None:
        """Class weights N / (C · n_c) of the training labels (0 for a class with no training
        utterance) and the scale of the affect targets; every training utterance must have
        every affect target."""
        if self.predicts_emotion:
            self.class_weights = class_weights([item.label for item in train_items],
                                               self.num_classes).tolist()
        if self.affect_targets:
            self.affect_scale = AffectScale.fit(self.name, self.affect_targets,
                                                [item.affect for item in train_items],
                                                [item.id for item in train_items])
        if self.settings.frozen:
            self.front_end  # noqa: B018  (records the hash of the front end the model sees)

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        s = self.settings
        front_end = None if s.frozen else self.ssl.new_front_end(frozen=False)
        layers = self.front_end if s.frozen else front_end
        head = SAPHead(layers.hidden_size, self.num_classes, heads=s.heads,
                       proj_dim=s.proj_dim, dropout=s.dropout,
                       attention_dropout=s.attention_dropout,
                       affect_dims=len(self.affect_targets), sr_norm=s.sr_norm,
                       implementation=s.implementation, pooling=s.pooling)
        if front_end is not None:
            return SAPModel(head, front_end=front_end)
        return SAPModel(head, combine=self.ssl.layer_combiner())

    # -- items ---------------------------------------------------------------------------------
    def raw_items(self, utterances: Sequence[Utterance]) -> list[SAPItem]:
        """Items of ``utterances`` (audio read at 16 kHz). With a frozen front end and
        ``cache`` on, SSL layer outputs and VAD masks come from (or go to) the disk cache."""
        s = self.settings
        if not (s.frozen and s.cache) or not utterances:
            return super().raw_items(utterances)
        return [self._item(features, speech, utterance) for (features, speech), utterance
                in zip(self.ssl.cached(utterances), utterances)]

    def make_item(self, waveform: Tensor, utterance: Utterance | None, *,
                  words: Sequence[WordTiming] | None = None) -> SAPItem:
        """The VAD mask and the SSL layer outputs (rounded to the cache dtype; frozen front
        end) or the waveform (fine-tuning), of the waveform cut to ``max_seconds``. ``words``
        are not used."""
        waveform = self.ssl.truncate(waveform)
        speech = speech_mask(waveform, self.vad)
        if not self.settings.frozen:
            return self._item(waveform, speech, utterance)
        return self._item(self.ssl.layer_outputs(waveform), speech, utterance)

    def _item(self, inputs: np.ndarray | Tensor, speech: Tensor,
              utterance: Utterance | None) -> SAPItem:
        return SAPItem(inputs, speech, self.label_of(utterance), self.affect_of(utterance),
                       "the recording" if utterance is None else utterance.id)

    def item_features(self, item: SAPItem) -> Tensor:
        """The item's SSL layer outputs (F, *layer_shape) as float32 (frozen front ends; the
        settings allow speaker_norm with no other)."""
        return _float32(item.inputs)

    def with_features(self, item: SAPItem, features: Tensor) -> SAPItem:
        return replace(item, inputs=features.numpy())

    # -- batches -------------------------------------------------------------------------------
    def make_batch(self, items: list[SAPItem]) -> Batch:
        """inputs: (B, F, *layer_shape) float32 SSL layer outputs with lengths = frame counts
        (frozen), or (B, N) waveforms with lengths = sample counts (fine-tuning); speech (B, F)
        bool; labels (B,); affect (B, K) the affect targets' values (NaN where unknown)."""
        speech, _ = pad_sequences([item.speech for item in items])
        if self.settings.frozen:
            inputs, lengths = pad_sequences([_float32(item.inputs) for item in items])
        else:
            inputs, lengths = pad_sequences([item.inputs for item in items])
        return {"inputs": inputs, "lengths": lengths, "speech": speech,
                "labels": torch.tensor([item.label for item in items], dtype=torch.long),
                "affect": torch.tensor([item.affect for item in items],
                                       dtype=torch.float32).reshape(len(items), -1),
                "ids": [item.id for item in items]}

    # -- training and prediction ---------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """The weighted sum (``loss_weights``) of the class-weighted emotion CE and each affect
        target's ``affect_loss`` on standardised values: by default 0.5 · CE + 0.25 · MAE
        valence + 0.25 · MAE arousal."""
        if self.predicts_emotion and self.class_weights is None:
            raise RuntimeError("sap: class weights are unset; call fit_extra(train_items) "
                               "before computing the loss")
        out = model(batch["inputs"], batch["lengths"], batch["speech"])
        if model.training:  # the count is of training utterances (not a validation loss's)
            fallbacks = out.fallback.sum()
            self._fallbacks = (fallbacks if self._fallbacks is None
                               else self._fallbacks + fallbacks)
        class_loss = None
        if self.predicts_emotion:
            per_class = torch.tensor(self.class_weights, device=out.logits.device)
            class_loss = F.cross_entropy(out.logits.float(), batch["labels"],
                                         weight=per_class.float())
        return targets_loss(self.targets, self.loss_weights, class_loss, out.regression,
                            batch["affect"], self.affect_scale, self.settings.affect_loss)

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        out = model(batch["inputs"], batch["lengths"], batch["speech"])
        affect = (self.affect_scale.restore(out.regression.float()) if self.affect_targets
                  else None)
        return Predictions(out.logits.float().softmax(dim=1), affect=affect)

    def embed(self, model: nn.Module, batch: Batch) -> Embeddings:
        """SR = [GAP, SAP] over the SSL features (B, 2 * hidden size)."""
        return Embeddings(model.embed(batch["inputs"], batch["lengths"], batch["speech"]))

    def export_module(self, model: nn.Module) -> nn.Module:
        """The head over SSL layer outputs (SAPClassifier); models with a fine-tuned front end
        do not export (UserError)."""
        try:
            return model.classifier()
        except ValueError as error:
            raise UserError(str(error)) from None

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        if not self.settings.frozen:
            raise UserError("sap: batches of a fine-tuned front end hold waveforms; the "
                            "exported head takes SSL layer outputs (frozen front ends only)")
        return batch["inputs"], batch["lengths"], batch["speech"]

    def epoch_logs(self) -> dict[str, Any]:
        """``vad_fallback_utterances``: training utterances of the last epoch in which VAD
        found no speech (pooled over all their frames instead)."""
        count = 0 if self._fallbacks is None else int(self._fallbacks)
        self._fallbacks = None
        return {"vad_fallback_utterances": count}


def _float32(inputs: np.ndarray | Tensor) -> Tensor:
    """Layer outputs (a cached, possibly read-only memory-mapped array) as a new float32
    tensor."""
    return torch.from_numpy(np.array(inputs, dtype=np.float32))

