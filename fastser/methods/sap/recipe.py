"""The SAP recipe: SSL front end + VAD speech mask + the SAP head (fastser.methods.sap.model),
trained on 0.5 · class-weighted CE + 0.25 · MAE(valence) + 0.25 · MAE(arousal)
(``loss_weights``).

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

import math
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
from fastser.errors import CorpusError, SettingsError, UserError
from fastser.methods.sap.model import POOLINGS, SAPHead, SAPModel
from fastser.train.kit import AugmentSettings, Preset, class_weights, setting
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
    regression: bool = setting(True, "valence/arousal regressors trained with the classifier "
                               "(false: classification only)")
    loss_weights: tuple[float, float, float] = setting(
        (0.5, 0.25, 0.25), "weights of the class-weighted CE, the valence MAE and the arousal "
        "MAE (CE > 0)", low=0.0)

    def check(self, method: str) -> None:
        super().check(method)
        if self.loss_weights[0] <= 0:
            raise SettingsError(f"{method}: setting loss_weights must be (CE, MAE valence, MAE "
                                f"arousal) with CE > 0; got {self.loss_weights}")
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


@dataclass
class SAPItem:
    """One utterance: ``inputs`` are its SSL layer outputs (F, *layer_shape) in the cache
    dtype, or float32 after per-speaker standardisation (frozen front end), or its 16 kHz
    waveform (N,) float32 (fine-tuning); ``speech`` (F,) bool VAD mask; valence/arousal NaN
    where unknown."""

    inputs: np.ndarray | torch.Tensor
    speech: torch.Tensor
    label: int
    valence: float
    arousal: float
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
                                         "loss_weights": (0.5, 0.25, 0.25), "regression": True,
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
        self.va_mean: list[float] | None = None
        self.ssl = SSLFeatures(self, self.vad)
        self._fallbacks: torch.Tensor | None = None

    # -- front end -----------------------------------------------------------------------------
    @property
    def regression(self) -> bool:
        """Whether the model has valence/arousal regressors and the loss uses them."""
        weights = self.settings.loss_weights
        return self.settings.regression and (weights[1] > 0 or weights[2] > 0)

    def requirements(self, corpus: Corpus) -> list[str]:
        return self.settings.pretrained_requirements()

    @property
    def vad(self) -> VADSettings:
        return VADSettings(self.settings.vad_frame_ms, self.settings.vad_aggressiveness)

    @property
    def front_end(self) -> SSLFrontEnd:
        """The frozen front end that featurises audio (:class:`SSLFeatures`)."""
        return self.ssl.front_end

    # -- state ---------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Class weights, V/A means and the frozen front end's hash, from :meth:`fit_extra`."""
        return {"class_weights": self.class_weights, "va_mean": self.va_mean,
                "front_end_hash": self.ssl.weights_hash}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.class_weights = state.get("class_weights")
        self.va_mean = state.get("va_mean")
        self.ssl.weights_hash = state.get("front_end_hash")

    def fit_extra(self, train_items: Sequence[SAPItem]) -> None:
        """Class weights N / (C · n_c) of the training labels (0 for a class with no training
        utterance), training V/A means (the regressor's initial bias); every training
        utterance must have V/A when the loss uses them."""
        self.class_weights = class_weights([item.label for item in train_items],
                                           self.num_classes).tolist()
        if self.regression:
            missing = [item.id for item in train_items if _missing_va(item)]
            _raise_missing_va(missing)
            self.va_mean = [float(np.mean([item.valence for item in train_items])),
                            float(np.mean([item.arousal for item in train_items]))]
        if self.settings.frozen:
            self.front_end  # noqa: B018  (records the hash of the front end the model sees)

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        s = self.settings
        front_end = None if s.frozen else self.ssl.new_front_end(frozen=False)
        layers = self.front_end if s.frozen else front_end
        head = SAPHead(layers.hidden_size, self.num_classes, heads=s.heads,
                       proj_dim=s.proj_dim, dropout=s.dropout,
                       attention_dropout=s.attention_dropout, regression=self.regression,
                       sr_norm=s.sr_norm, implementation=s.implementation, pooling=s.pooling)
        if self.regression and self.va_mean is not None:
            with torch.no_grad():
                head.regressor.bias.copy_(torch.tensor(self.va_mean))
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
        if utterance is None:
            return SAPItem(inputs, speech, -1, math.nan, math.nan, "the recording")
        valence = math.nan if utterance.valence is None else float(utterance.valence)
        arousal = math.nan if utterance.arousal is None else float(utterance.arousal)
        return SAPItem(inputs, speech, self.label_of(utterance), valence, arousal,
                       utterance.id)

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
        bool; labels (B,); targets (B, 2) valence, arousal (NaN where unknown)."""
        speech, _ = pad_sequences([item.speech for item in items])
        if self.settings.frozen:
            inputs, lengths = pad_sequences([_float32(item.inputs) for item in items])
        else:
            inputs, lengths = pad_sequences([item.inputs for item in items])
        return {"inputs": inputs, "lengths": lengths, "speech": speech,
                "labels": torch.tensor([item.label for item in items], dtype=torch.long),
                "targets": torch.tensor([[item.valence, item.arousal] for item in items],
                                        dtype=torch.float32),
                "ids": [item.id for item in items],
                "missing_va": [item.id for item in items if _missing_va(item)]}

    # -- training and prediction ---------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """0.5 · class-weighted CE + 0.25 · MAE valence + 0.25 · MAE arousal (loss_weights)."""
        if self.class_weights is None:
            raise RuntimeError("sap: class weights are unset; call fit_extra(train_items) "
                               "before computing the loss")
        if self.regression:
            _raise_missing_va(batch["missing_va"])
        out = model(batch["inputs"], batch["lengths"], batch["speech"])
        if model.training:  # the count is of training utterances (not a validation loss's)
            fallbacks = out.fallback.sum()
            self._fallbacks = (fallbacks if self._fallbacks is None
                               else self._fallbacks + fallbacks)
        weights = torch.tensor(self.class_weights, dtype=out.logits.dtype,
                               device=out.logits.device)
        w_ce, w_v, w_a = self.settings.loss_weights
        loss = w_ce * F.cross_entropy(out.logits.float(), batch["labels"], weight=weights.float())
        if self.regression:
            mae = (out.regression.float() - batch["targets"]).abs().mean(dim=0)
            loss = loss + w_v * mae[0] + w_a * mae[1]
        return loss

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        out = model(batch["inputs"], batch["lengths"], batch["speech"])
        return Predictions(out.logits.float().softmax(dim=1))

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


def _missing_va(item: SAPItem) -> bool:
    return math.isnan(item.valence) or math.isnan(item.arousal)


def _raise_missing_va(ids: Sequence[str]) -> None:
    if ids:
        more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
        raise CorpusError(f"sap: utterance {ids[0]!r}{more} has no valence/arousal label, which "
                          "the multitask loss needs (set regression=False, or its loss "
                          "weights to 0, for corpora without them)")
