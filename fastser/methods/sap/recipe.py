"""The SAP recipe: SSL front end + VAD speech mask + the SAP head (fastser/models/sap.py),
trained on 0.5 · class-weighted CE + 0.25 · MAE(valence) + 0.25 · MAE(arousal).

Front end (config keys): ``ssl_path`` (a local directory written by ``save_pretrained``) or
``ssl_config`` (a preset name of :data:`SSL_PRESETS` or ``transformers`` configuration keyword
arguments; random weights drawn from ``ssl_seed``), ``ssl_kind`` (wavlm, hubert, wav2vec2),
``layer`` ("last" or "weighted"), ``frozen``, ``speaker_norm`` (frozen front ends: each
speaker's layer outputs standardised with that speaker's statistics, fastser.audio.normalization;
a lone recording given to ``item_from_audio`` is its own speaker).

Frozen front ends (the default): every utterance's SSL layer outputs are computed once, when
the corpus is featurised, and cached on disk (``cache``, ``cache_dir``, ``cache_dtype``): a
memory-mapped array per corpus keyed by the front end's weights and the audio files, so each
epoch, and every later run on the same corpus, costs only the head. Features computed for a
single recording are rounded to the cache dtype too, so cached and fresh features agree.
Fine-tuned front ends (``frozen=False``): items hold the 16 kHz waveform and the model runs the
front end on every batch.

Audio is 16 kHz mono (``featurize`` reads files at 16 kHz; :meth:`SAPRecipe.item_from_audio`
takes 16 kHz waveforms, as the Recipe interface states). Audio shorter than one SSL frame (400
samples) is rejected, naming the utterance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastser.audio.alignment import WordTiming
from fastser.audio.io import load_audio
from fastser.audio.normalization import standardise_by_speaker
from fastser.audio.ssl import (CACHE_DTYPES, LAYER_MODES, SSL_KINDS, SSLFrontEnd, VADSettings,
                               WeightedLayerSum, cached_features, speech_mask)
from fastser.audio.vad import SSL_RECEPTIVE_FIELD
from fastser.data.corpus import Utterance
from fastser.data.synthetic import default_cache_dir
from fastser.models.sap import SAPHead, SAPModel
from fastser.train.recipe import SAMPLE_RATE, Batch, Predictions, Recipe

_COMMON = {"layerdrop": 0.0, "mask_time_prob": 0.0, "feat_extract_norm": "layer",
           "conv_bias": True}
#: Random-init front end sizes. "tiny" is for tests; "small" is the demo's (frozen, see
#: recipes/sap.py in docs/architecture.md); "base" has WavLM Base dimensions (benchmarks).
SSL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16,
             "num_conv_pos_embedding_groups": 4},
    "small": {**_COMMON, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 128, "conv_dim": (64,) * 7, "num_conv_pos_embeddings": 32,
              "num_conv_pos_embedding_groups": 4},
    "base": {**_COMMON, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "conv_dim": (512,) * 7},
}

DEFAULTS: dict[str, Any] = {
    "ssl_kind": "wavlm", "ssl_path": None, "ssl_config": "small", "ssl_seed": 0,
    "layer": "weighted", "frozen": True,
    "cache": True, "cache_dir": None, "cache_dtype": "float16",
    "vad_frame_ms": 30, "vad_aggressiveness": 3,
    "heads": 4, "proj_dim": 32, "dropout": 0.1, "attention_dropout": 0.0, "sr_norm": False,
    "regression": True, "loss_weights": (0.5, 0.25, 0.25), "speaker_norm": False,
    "naive": False,
}


@dataclass
class SAPItem:
    """One utterance: ``inputs`` are its SSL layer outputs (F, *layer_shape) in the cache
    dtype (frozen front end) or its 16 kHz waveform (N,) float32 (fine-tuning); ``speech``
    (F,) bool VAD mask; valence/arousal NaN where unknown."""

    inputs: np.ndarray | torch.Tensor
    speech: torch.Tensor
    label: int
    valence: float
    arousal: float
    id: str


class SAPRecipe(Recipe):
    name = "sap"
    defaults = DEFAULTS
    # A frozen random "small" WavLM (no download) with per-speaker standardisation of its
    # layer outputs, regularised: held-out UA 0.64 / 0.67 / 0.56 over seeds 0-2 (RESULTS.md).
    demo_config: ClassVar[dict[str, Any]] = {"ssl_config": "small", "layer": "weighted",
                                             "speaker_norm": True, "dropout": 0.3}
    demo_train: ClassVar[dict[str, Any]] = {"epochs": 20, "batch_size": 16, "lr": 2e-3,
                                            "weight_decay": 0.05}

    def __init__(self, label_names: Sequence[str], **config: Any) -> None:
        super().__init__(label_names, **config)
        self._check_options()
        self.class_weights: list[float] | None = None
        self.va_mean: list[float] | None = None
        self.front_end_hash: str | None = None
        self._front_end: SSLFrontEnd | None = None
        self._fallbacks: torch.Tensor | None = None

    # -- configuration -------------------------------------------------------------------------
    def _check_options(self) -> None:
        o = self.settings
        if o["ssl_kind"] not in SSL_KINDS:
            raise ValueError(f"sap: ssl_kind must be one of {sorted(SSL_KINDS)}, "
                             f"got {o['ssl_kind']!r}")
        if o["ssl_path"] is None and isinstance(o["ssl_config"], str) \
                and o["ssl_config"] not in SSL_PRESETS:
            raise ValueError(f"sap: ssl_config must be a dict or one of {sorted(SSL_PRESETS)}, "
                             f"got {o['ssl_config']!r}")
        if o["layer"] not in LAYER_MODES:
            raise ValueError(f"sap: layer must be one of {LAYER_MODES}, got {o['layer']!r}")
        if o["cache_dtype"] not in CACHE_DTYPES:
            raise ValueError(f"sap: cache_dtype must be one of {CACHE_DTYPES}, "
                             f"got {o['cache_dtype']!r}")
        weights = o["loss_weights"]
        if (len(weights) != 3 or not all(isinstance(w, (int, float)) and math.isfinite(w)
                                         and w >= 0 for w in weights) or weights[0] <= 0):
            raise ValueError("sap: loss_weights must be (CE, MAE valence, MAE arousal), "
                             f"finite, >= 0, with CE > 0; got {weights}")
        VADSettings(o["vad_frame_ms"], o["vad_aggressiveness"])
        if o["speaker_norm"] and not o["frozen"]:
            raise ValueError("sap: speaker_norm standardises cached SSL features, so it needs "
                             "a frozen front end (frozen=True)")

    @property
    def frozen(self) -> bool:
        return bool(self.settings["frozen"])

    @property
    def regression(self) -> bool:
        """Whether the model has valence/arousal regressors and the loss uses them."""
        weights = self.settings["loss_weights"]
        return bool(self.settings["regression"]) and (weights[1] > 0 or weights[2] > 0)

    @property
    def vad(self) -> VADSettings:
        return VADSettings(self.settings["vad_frame_ms"], self.settings["vad_aggressiveness"])

    def new_front_end(self) -> SSLFrontEnd:
        """A front end as the config describes it (the same weights on every call)."""
        o = self.settings
        options = {"layer": o["layer"], "frozen": self.frozen}
        if o["ssl_path"] is not None:
            front_end = SSLFrontEnd.from_pretrained(o["ssl_path"], o["ssl_kind"], **options)
        else:
            config = o["ssl_config"]
            config = SSL_PRESETS[config] if isinstance(config, str) else config
            front_end = SSLFrontEnd.from_config(o["ssl_kind"], config, seed=o["ssl_seed"],
                                                **options)
        front_end.check_vad_alignment()
        return front_end

    @property
    def front_end(self) -> SSLFrontEnd:
        """The frozen front end that featurises audio (built once, checked against the one
        the trained model saw)."""
        if self._front_end is None:
            front_end = self.new_front_end()
            fingerprint = front_end.weights_hash()
            if self.front_end_hash is not None and fingerprint != self.front_end_hash:
                raise ValueError(
                    "sap: the SSL front end built from this config differs from the one the "
                    f"model was trained with (weights hash {fingerprint}, trained with "
                    f"{self.front_end_hash}): other weights in ssl_path, or another "
                    "transformers version drawing other random weights")
            self.front_end_hash = fingerprint
            self._front_end = front_end
        return self._front_end

    # -- state ---------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Class weights, V/A means and the frozen front end's hash, from :meth:`fit_extra`."""
        return {"class_weights": self.class_weights, "va_mean": self.va_mean,
                "front_end_hash": self.front_end_hash}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.class_weights = state.get("class_weights")
        self.va_mean = state.get("va_mean")
        self.front_end_hash = state.get("front_end_hash")

    def fit_extra(self, train_items: Sequence[SAPItem]) -> None:
        """Class weights N / (C · n_c) of the training labels (0 for a class with no training
        utterance), training V/A means (the regressor's initial bias); every training
        utterance must have V/A when the loss uses them."""
        labels = np.array([item.label for item in train_items])
        if labels.size == 0 or (labels < 0).any():
            raise ValueError("sap: fit_extra needs labelled training items")
        counts = np.bincount(labels, minlength=self.num_classes).astype(np.float64)
        weights = np.where(counts > 0, len(labels) / (self.num_classes * np.maximum(counts, 1)), 0.0)
        self.class_weights = weights.tolist()
        if self.regression:
            missing = [item.id for item in train_items if _missing_va(item)]
            _raise_missing_va(missing)
            self.va_mean = [float(np.mean([item.valence for item in train_items])),
                            float(np.mean([item.arousal for item in train_items]))]
        if self.frozen:
            self.front_end  # noqa: B018  (records the hash of the front end the model sees)

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        o = self.settings
        front_end = self.new_front_end() if not self.frozen else None
        layers = self.front_end if self.frozen else front_end
        head = SAPHead(layers.hidden_size, self.num_classes, heads=o["heads"],
                       proj_dim=o["proj_dim"], dropout=o["dropout"],
                       attention_dropout=o["attention_dropout"], regression=self.regression,
                       sr_norm=o["sr_norm"], naive=o["naive"])
        if self.regression and self.va_mean is not None:
            with torch.no_grad():
                head.regressor.bias.copy_(torch.tensor(self.va_mean))
        if front_end is not None:
            return SAPModel(head, front_end=front_end)
        combine = WeightedLayerSum(layers.num_layers) if o["layer"] == "weighted" else None
        return SAPModel(head, combine=combine)

    # -- items and batches ---------------------------------------------------------------------
    def featurize(self, utterances: Sequence[Utterance]) -> list[SAPItem]:
        """Items of ``utterances`` (audio read at 16 kHz). With a frozen front end and
        ``cache`` on, SSL layer outputs and VAD masks come from (or go to) the disk cache."""
        if not (self.frozen and self.settings["cache"]) or not utterances:
            items = [self._audio_item(load_audio(u.path, SAMPLE_RATE), u) for u in utterances]
        else:
            cache_dir = self.settings["cache_dir"] or default_cache_dir() / "ssl-features"
            cached = cached_features(self.front_end, [u.path for u in utterances],
                                     lambda path: load_audio(path, SAMPLE_RATE), cache_dir,
                                     vad=self.vad, dtype=self.settings["cache_dtype"])
            items = []
            for index, utterance in enumerate(utterances):
                features, speech = cached.utterance(index)
                items.append(self._item(features, torch.from_numpy(np.array(speech)),
                                        utterance))
        if self.settings["speaker_norm"]:
            layers = standardise_by_speaker([torch.from_numpy(np.asarray(i.inputs, np.float32))
                                             for i in items], [u.speaker for u in utterances])
            items = [replace(item, inputs=x.numpy()) for item, x in zip(items, layers)]
        return items

    def item_from_audio(self, waveform: torch.Tensor, utterance: Utterance | None = None, *,
                        words: Sequence[WordTiming] | None = None) -> SAPItem:
        """An item from a 16 kHz mono waveform (N,), N >= 400. ``words`` are not used. With
        ``speaker_norm`` a lone recording is its own speaker (its own statistics)."""
        item = self._audio_item(waveform, utterance)
        if not self.settings["speaker_norm"]:
            return item
        layers = standardise_by_speaker([torch.from_numpy(np.asarray(item.inputs, np.float32))],
                                        ["recording"])
        return replace(item, inputs=layers[0].numpy())

    def _audio_item(self, waveform: torch.Tensor, utterance: Utterance | None) -> SAPItem:
        name = f"utterance {utterance.id!r}" if utterance is not None else "the recording"
        if not isinstance(waveform, torch.Tensor) or waveform.dim() != 1:
            raise ValueError(f"sap: {name}: expected a 1-D 16 kHz waveform, got "
                             f"{getattr(waveform, 'shape', type(waveform).__name__)}")
        if waveform.shape[0] < SSL_RECEPTIVE_FIELD:
            raise ValueError(f"sap: {name} has {waveform.shape[0]} samples, shorter than one "
                             f"SSL frame ({SSL_RECEPTIVE_FIELD} samples = 25 ms at 16 kHz)")
        waveform = waveform.float()
        speech = speech_mask(waveform, self.vad)
        if not self.frozen:
            return self._item(waveform, speech, utterance)
        lengths = torch.tensor([waveform.shape[0]])
        with torch.no_grad():
            layers, _ = self.front_end.layer_outputs(waveform[None], lengths)
        return self._item(layers[0].numpy().astype(self.settings["cache_dtype"]), speech,
                          utterance)

    def _item(self, inputs, speech: torch.Tensor, utterance: Utterance | None) -> SAPItem:
        if utterance is None:
            return SAPItem(inputs, speech, -1, math.nan, math.nan, "the recording")
        valence = math.nan if utterance.valence is None else float(utterance.valence)
        arousal = math.nan if utterance.arousal is None else float(utterance.arousal)
        return SAPItem(inputs, speech, self.label_index(utterance.label), valence, arousal,
                       utterance.id)

    def collate(self, items: Sequence[SAPItem]) -> Batch:
        """inputs: (B, F, *layer_shape) float32 SSL layer outputs with lengths = frame counts
        (frozen), or (B, N) waveforms with lengths = sample counts (fine-tuning); speech (B, F)
        bool; labels (B,); targets (B, 2) valence, arousal (NaN where unknown)."""
        if not items:
            raise ValueError("sap: cannot collate an empty batch")
        speech = nn.utils.rnn.pad_sequence([item.speech for item in items], batch_first=True)
        if self.frozen:
            lengths = [item.inputs.shape[0] for item in items]
            inputs = np.zeros((len(items), max(lengths), *items[0].inputs.shape[1:]),
                              dtype=np.float32)
            for row, item in zip(inputs, items):
                row[:item.inputs.shape[0]] = item.inputs
            inputs = torch.from_numpy(inputs)
        else:
            lengths = [item.inputs.shape[0] for item in items]
            inputs = nn.utils.rnn.pad_sequence([item.inputs for item in items], batch_first=True)
        return {"inputs": inputs, "lengths": torch.tensor(lengths, dtype=torch.long),
                "speech": speech,
                "labels": torch.tensor([item.label for item in items], dtype=torch.long),
                "targets": torch.tensor([[item.valence, item.arousal] for item in items],
                                        dtype=torch.float32),
                "ids": [item.id for item in items],
                "missing_va": [item.id for item in items if _missing_va(item)]}

    # -- training and prediction ---------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """0.5 · class-weighted CE + 0.25 · MAE valence + 0.25 · MAE arousal (loss_weights)."""
        if self.class_weights is None:
            raise RuntimeError("sap: class weights are unset; call fit_extra(train_items) "
                               "before computing the loss")
        if self.regression:
            _raise_missing_va(batch["missing_va"])
        out = model(batch["inputs"], batch["lengths"], batch["speech"])
        fallbacks = out.fallback.sum()
        self._fallbacks = fallbacks if self._fallbacks is None else self._fallbacks + fallbacks
        weights = torch.tensor(self.class_weights, dtype=out.logits.dtype,
                               device=out.logits.device)
        w_ce, w_v, w_a = self.settings["loss_weights"]
        loss = w_ce * F.cross_entropy(out.logits.float(), batch["labels"], weight=weights.float())
        if self.regression:
            mae = (out.regression.float() - batch["targets"]).abs().mean(dim=0)
            loss = loss + w_v * mae[0] + w_a * mae[1]
        return loss

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        out = model(batch["inputs"], batch["lengths"], batch["speech"])
        return Predictions(out.logits.float().softmax(dim=1))

    def export_module(self, model: nn.Module) -> nn.Module:
        """The head over SSL layer outputs (SAPClassifier); models with a fine-tuned front end
        do not export (ValueError)."""
        return model.classifier()

    def export_inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        if not self.frozen:
            raise ValueError("sap: batches of a fine-tuned front end hold waveforms; the "
                             "exported head takes SSL layer outputs (frozen front ends only)")
        return batch["inputs"], batch["lengths"], batch["speech"]

    def epoch_logs(self) -> dict[str, Any]:
        """``vad_fallback_utterances``: training utterances of the last epoch in which VAD
        found no speech (pooled over all their frames instead)."""
        count = 0 if self._fallbacks is None else int(self._fallbacks)
        self._fallbacks = None
        return {"vad_fallback_utterances": count}


def _missing_va(item: SAPItem) -> bool:
    return math.isnan(item.valence) or math.isnan(item.arousal)


def _raise_missing_va(ids: Sequence[str]) -> None:
    if ids:
        more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
        raise ValueError(f"sap: utterance {ids[0]!r}{more} has no valence/arousal label, which "
                         "the multitask loss needs (set regression=False, or its loss "
                         "weights to 0, for corpora without them)")
