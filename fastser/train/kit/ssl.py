"""SSL features for a method (SAP, and MSTR with ``features="ssl"``): the settings of an SSL
front end, declared once (:class:`SSLSettings`); building it from pretrained weights (a local
folder written by ``save_pretrained``, or a model name that ``transformers`` fetches when the
machine has network access) or from random weights of a configuration, with a loud
:class:`RandomSSLWeightsWarning`; checking it against the front end a trained model saw
(weights hash); and the per-corpus disk cache of its layer outputs and VAD masks
(:class:`SSLFeatures`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fastser.audio.io import SAMPLE_RATE
from fastser.audio.ssl import (CACHE_DTYPES, LAYER_MODES, SSL_KINDS, SSLFrontEnd, VADSettings,
                               WeightedLayerSum, cached_features)
from fastser.data.corpus import Utterance
from fastser.data.synthetic import default_cache_dir
from fastser.errors import CheckpointError, SettingsError
from fastser.train.kit.settings import Settings, setting


_COMMON = {"layerdrop": 0.0, "mask_time_prob": 0.0, "feat_extract_norm": "layer",
           "conv_bias": True}
#: Random-init front end sizes. "tiny" is for tests; "small" is the demo's (frozen, see
#: methods/sap/ in docs/architecture.md); "base" has WavLM Base dimensions (benchmarks).
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


class RandomSSLWeightsWarning(UserWarning):
    """A method runs on an SSL front end with randomly initialised weights (no ``ssl_path``):
    its features carry nothing learnt from speech, so results say nothing about the method
    with pretrained SSL features."""


@dataclass(frozen=True, kw_only=True)
class SSLSettings(Settings):
    """The settings of a method's SSL front end (a base of the method's settings)."""

    ssl_kind: str = setting("wavlm", "SSL model family of the front end",
                            choices=tuple(SSL_KINDS))
    ssl_path: str | None = setting(
        None, "pretrained SSL weights: a local folder written by save_pretrained, or a model "
        "name (e.g. microsoft/wavlm-large) that transformers fetches when the machine has "
        "network access (null: RANDOM weights of ssl_config, with a warning)", path=True)
    ssl_config: str | dict = setting("small", "random-weight front end without ssl_path: a "
                                     f"preset ({', '.join(SSL_PRESETS)}) or transformers "
                                     "configuration keyword arguments (a JSON object)")
    ssl_seed: int = setting(0, "seed of the random front-end weights (without ssl_path)",
                            low=0, high=2**64 - 1)
    layer: str = setting("weighted", "what the model sees: the last SSL layer, or a learned "
                         "weighted sum of every layer", choices=LAYER_MODES)
    cache: bool = setting(True, "cache a frozen front end's layer outputs and VAD masks on "
                          "disk, per corpus")
    cache_dir: str | None = setting(None, "folder of the feature cache (null: the fastser "
                                    "cache folder's ssl-features)", path=True,
                                    resume_safe=True)
    cache_dtype: str = setting("float16", "storage type of cached layer outputs",
                               choices=CACHE_DTYPES)
    max_seconds: float | None = setting(
        None, "audio beyond this many seconds is cut off before the front end (SAP's 19 s on "
        "IEMOCAP; null: none)", low=0.025)

    def check(self, method: str) -> None:
        super().check(method)
        if self.ssl_path is None and isinstance(self.ssl_config, str) \
                and self.ssl_config not in SSL_PRESETS:
            raise SettingsError(f"{method}: setting ssl_config must be a JSON object or one of "
                                f"{sorted(SSL_PRESETS)}, got {self.ssl_config!r}")

    def pretrained_requirements(self) -> list[str]:
        """Why a method on this front end cannot give a meaningful result on real speech
        (``Recipe.requirements``): random weights, without ``ssl_path``."""
        if self.ssl_path is not None:
            return []
        return ["no pretrained SSL weights (setting ssl_path): a random-weight front end is a "
                "smoke-test setting, not meaningful on real speech"]

    def hidden_size(self) -> int | None:
        """The front end's hidden size where the settings tell it (a random-weight front end
        of a preset, or of a configuration that sets hidden_size), else None."""
        if self.ssl_path is not None:
            return None
        config = (SSL_PRESETS[self.ssl_config] if isinstance(self.ssl_config, str)
                  else self.ssl_config)
        hidden = config.get("hidden_size")
        return hidden if isinstance(hidden, int) and not isinstance(hidden, bool) else None


class SSLFeatures:
    """A recipe's SSL front end and feature cache, as its settings (:class:`SSLSettings`)
    describe them; its path settings are read through the recipe (``Recipe.path``: never a
    checkpoint's stored path unless passed again or trusted). ``vad``: the VAD masks stored
    with the cached features. ``weights_hash``: the hash of the frozen front end the model
    sees (recorded by :attr:`front_end`, restored from a checkpoint)."""

    def __init__(self, recipe: Any, vad: VADSettings) -> None:
        self.recipe, self.method, self.vad = recipe, recipe.name, vad
        self.settings: SSLSettings = recipe.settings
        self.weights_hash: str | None = None
        self._front_end: SSLFrontEnd | None = None

    def new_front_end(self, *, frozen: bool = True) -> SSLFrontEnd:
        """A front end as the settings describe it (the same weights on every call); random
        weights raise a :class:`RandomSSLWeightsWarning`."""
        s = self.settings
        options = {"layer": s.layer, "frozen": frozen}
        if s.ssl_path is not None:
            front_end = SSLFrontEnd.from_pretrained(self.recipe.required_path("ssl_path"),
                                                    s.ssl_kind, **options)
        else:
            config = SSL_PRESETS[s.ssl_config] if isinstance(s.ssl_config, str) else s.ssl_config
            name = s.ssl_config if isinstance(s.ssl_config, str) else "custom"
            message = (f"{self.method}: the SSL front end has RANDOM weights ({s.ssl_kind}, "
                       f"{name} configuration, seed {s.ssl_seed}): its features carry nothing "
                       f"learnt from speech, so results do not measure the method with "
                       f"pretrained SSL features; set ssl_path to a model name or a "
                       f"save_pretrained folder")
            warnings.warn(message, RandomSSLWeightsWarning, stacklevel=2)
            front_end = SSLFrontEnd.from_config(s.ssl_kind, config, seed=s.ssl_seed, **options)
        front_end.check_vad_alignment()
        return front_end

    @property
    def front_end(self) -> SSLFrontEnd:
        """The frozen front end that featurises audio (built once, checked against the one
        the trained model saw)."""
        if self._front_end is None:
            front_end = self.new_front_end()
            fingerprint = front_end.weights_hash()
            if self.weights_hash is not None and fingerprint != self.weights_hash:
                raise CheckpointError(
                    f"{self.method}: the SSL front end built from these settings differs from "
                    f"the one the model was trained with (weights hash {fingerprint}, trained "
                    f"with {self.weights_hash}): other weights in ssl_path, or another "
                    "transformers version drawing other random weights")
            self.weights_hash = fingerprint
            self._front_end = front_end
        return self._front_end

    @property
    def max_samples(self) -> int | None:
        """``max_seconds`` in 16 kHz samples (None: no truncation)."""
        seconds = self.settings.max_seconds
        return None if seconds is None else round(seconds * SAMPLE_RATE)

    def truncate(self, waveform: Tensor) -> Tensor:
        """The part of a 16 kHz waveform (N,) the front end sees (``max_seconds``)."""
        return waveform if self.max_samples is None else waveform[:self.max_samples]

    def layer_combiner(self) -> nn.Module | None:
        """The learned weighted layer sum a model over this front end's cached layer outputs
        needs (``layer="weighted"``), else None."""
        if self.settings.layer == "weighted":
            return WeightedLayerSum(self.front_end.num_layers)
        return None

    def cached(self, utterances: Sequence[Utterance]) -> list[tuple[np.ndarray, Tensor]]:
        """(layer outputs (F, *layer_shape) memory-mapped in the cache dtype, VAD speech mask
        (F,) bool) of every utterance (cut to ``max_seconds``), from (or written to) the disk
        cache."""
        s = self.settings
        cache_dir = self.recipe.path("cache_dir") or default_cache_dir() / "ssl-features"
        cached = cached_features(self.front_end, [u.audio for u in utterances],
                                 lambda audio: audio.load(SAMPLE_RATE), cache_dir,
                                 vad=self.vad, dtype=s.cache_dtype,
                                 max_samples=self.max_samples)
        parts = []
        for index in range(len(utterances)):
            features, speech = cached.utterance(index)
            parts.append((features, torch.from_numpy(np.array(speech))))
        return parts

    def layer_outputs(self, waveform: Tensor) -> np.ndarray:
        """The frozen front end's layer outputs (F, *layer_shape) of one 16 kHz waveform (N,)
        already cut by :meth:`truncate`, rounded to the cache dtype (so that cached and fresh
        features agree)."""
        lengths = torch.tensor([waveform.shape[0]])
        with torch.no_grad():
            layers, _ = self.front_end.layer_outputs(waveform[None], lengths)
        return layers[0].numpy().astype(self.settings.cache_dtype)
