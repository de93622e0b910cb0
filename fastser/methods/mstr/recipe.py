"""The MSTR recipe ("mstr") and its vanilla-Transformer baseline ("transformer").

Both train an utterance classifier over frame features with cross-entropy; they differ only
in the blocks' attention: MSTR's fused fractal attention (fastser.models.mstr.MSTR) or full
softmax self-attention (fastser.models.transformer.VanillaTransformer).  The baseline is a
recipe of its own so that ``fastser train/cv --model transformer`` runs it with the same
features, sizes and settings, and the two compare one to one.

Features: MFCCs (fastser.audio.features.MFCC, ``n_mfcc`` coefficients, 25 ms window) at a
20 ms hop, the frame rate of SSL models (WavLM, HuBERT, wav2vec 2.0: 50 frames/s, so an
utterance has the frame count MSTR sees on SSL features).  No SSL weights are available
offline; the model's input projection maps any feature size to ``embed_dim``.  Features are
standardised per coefficient with the mean and standard deviation of the training frames
(``fit_extra``; stored in ``extra_state``, applied in ``collate``; identity before fitting).
With ``speaker_norm`` (the demo's setting) every speaker's frames are first standardised
with that speaker's own statistics (fastser.audio.normalization; no labels needed, so test
speakers too; a lone recording given to ``item_from_audio`` is its own speaker).
A batch is padded frames (B, T, n_mfcc) + lengths (B,) + labels (B,).

Config keys: n_mfcc (40), hop_ms (20.0), embed_dim (1024), num_heads (16), num_blocks (4),
ffn_dim (2048), dropout (0.1), classifier_hidden (None: embed_dim/2, embed_dim/4), p (3) and
levels (4) for MSTR only, speaker_norm (False), naive (False; MSTR: the reference fractal attention op instead of
the fused one; transformer: attention as matmul, masked softmax, matmul instead of
``F.scaled_dot_product_attention``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from fastser.audio.alignment import WordTiming
from fastser.audio.features import MFCC
from fastser.audio.io import load_audio
from fastser.audio.normalization import frame_statistics, standardise_by_speaker
from fastser.data.corpus import Utterance
from fastser.models.mstr import MSTR
from fastser.models.transformer import ClassProbabilities, VanillaTransformer
from fastser.train.recipe import SAMPLE_RATE, Batch, Predictions, Recipe

COMMON_DEFAULTS: dict[str, Any] = {
    "n_mfcc": 40, "hop_ms": 20.0, "embed_dim": 1024, "num_heads": 16, "num_blocks": 4,
    "ffn_dim": 2048, "dropout": 0.1, "classifier_hidden": None, "naive": False,
    "speaker_norm": False,
}
# Small, regularised, per-speaker standardised: held-out UA 0.67 / 0.74 / 0.65 over seeds 0-2.
DEMO_MODEL = {"embed_dim": 64, "num_heads": 4, "num_blocks": 2, "ffn_dim": 128,
              "dropout": 0.3, "speaker_norm": True}
DEMO_TRAIN = {"epochs": 30, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.05}


class FrameItem(NamedTuple):
    """One utterance: its feature frames (T, n_mfcc) float32 and its class (-1: unknown)."""

    frames: Tensor
    label: int


class MSTRRecipe(Recipe):
    name = "mstr"
    defaults: dict[str, Any] = {**COMMON_DEFAULTS, "p": 3, "levels": 4}
    demo_config: dict[str, Any] = dict(DEMO_MODEL)
    demo_train: dict[str, Any] = dict(DEMO_TRAIN)

    def __init__(self, label_names: Sequence[str], **config: Any) -> None:
        super().__init__(label_names, **config)
        self.mfcc = MFCC(SAMPLE_RATE, int(self.settings["n_mfcc"]), win_ms=25.0,
                         hop_ms=float(self.settings["hop_ms"]))
        self.feature_mean: Tensor | None = None
        self.feature_std: Tensor | None = None

    # -- features ------------------------------------------------------------------------------
    def featurize(self, utterances: Sequence[Utterance]) -> list[FrameItem]:
        """Items of ``utterances``; with ``speaker_norm`` each speaker's frames standardised
        with that speaker's own statistics (no labels needed, so test speakers too)."""
        items = [self._raw_item(load_audio(u.path, SAMPLE_RATE), u) for u in utterances]
        if not self.settings["speaker_norm"]:
            return items
        frames = standardise_by_speaker([item.frames for item in items],
                                        [u.speaker for u in utterances])
        items = [FrameItem(f, item.label) for f, item in zip(frames, items)]
        return items

    def item_from_audio(self, waveform: Tensor, utterance: Utterance | None = None, *,
                        words: Sequence[WordTiming] | None = None) -> FrameItem:
        """MFCC frames of a 16 kHz mono waveform (N,); ``words`` are not used.  With
        ``speaker_norm`` a lone recording is its own speaker (its own statistics)."""
        item = self._raw_item(waveform, utterance)
        if not self.settings["speaker_norm"]:
            return item
        mean, std = frame_statistics([item.frames])
        return FrameItem((item.frames - mean) / std, item.label)

    def _raw_item(self, waveform: Tensor, utterance: Utterance | None) -> FrameItem:
        if not isinstance(waveform, Tensor) or waveform.dim() != 1:
            raise ValueError(f"{self.name}: waveform must be a 1-D tensor (N,) of 16 kHz "
                             "samples")
        label = -1 if utterance is None else self.label_index(utterance.label)
        try:
            frames = self.mfcc(waveform)
        except ValueError as error:
            where = "" if utterance is None else f" utterance {utterance.id!r}:"
            raise ValueError(f"{self.name}:{where} {error}") from None
        return FrameItem(frames, label)

    def fit_extra(self, train_items: Sequence[FrameItem]) -> None:
        """Per-coefficient mean and standard deviation of every training frame."""
        self.feature_mean, self.feature_std = frame_statistics(
            [item.frames for item in train_items])

    def extra_state(self) -> dict[str, Any]:
        if self.feature_mean is None:
            return {}
        return {"feature_mean": self.feature_mean, "feature_std": self.feature_std}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            self.feature_mean, self.feature_std = state["feature_mean"], state["feature_std"]

    # -- model ---------------------------------------------------------------------------------
    def _sizes(self) -> dict[str, Any]:
        s = self.settings
        return {"embed_dim": s["embed_dim"], "num_heads": s["num_heads"],
                "num_blocks": s["num_blocks"], "ffn_dim": s["ffn_dim"], "dropout": s["dropout"],
                "classifier_hidden": s["classifier_hidden"]}

    def build_model(self) -> nn.Module:
        s = self.settings
        return MSTR(s["n_mfcc"], self.num_classes, p=s["p"], levels=s["levels"],
                    use_reference=s["naive"], **self._sizes())

    # -- batches -------------------------------------------------------------------------------
    def collate(self, items: Sequence[FrameItem]) -> Batch:
        """Standardised frames padded with zeros (B, T, n_mfcc), lengths (B,), labels (B,)."""
        if len(items) == 0:
            raise ValueError(f"{self.name}: empty batch")
        frames = [item.frames for item in items]
        if self.feature_mean is not None:
            frames = [(f - self.feature_mean) / self.feature_std for f in frames]
        return {
            "features": pad_sequence(frames, batch_first=True),
            "lengths": torch.tensor([f.shape[0] for f in frames], dtype=torch.long),
            "labels": torch.tensor([item.label for item in items], dtype=torch.long),
        }

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return F.cross_entropy(model(batch["features"], batch["lengths"]), batch["labels"])

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        return Predictions(model(batch["features"], batch["lengths"]).softmax(dim=1))

    def export_module(self, model: nn.Module) -> nn.Module:
        return ClassProbabilities(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return batch["features"], batch["lengths"]


class TransformerRecipe(MSTRRecipe):
    """MSTR's vanilla-Transformer baseline: the same features, sizes and skeleton with full
    softmax self-attention."""

    name = "transformer"
    defaults = dict(COMMON_DEFAULTS)
    demo_config = dict(DEMO_MODEL)
    demo_train = dict(DEMO_TRAIN)

    def build_model(self) -> nn.Module:
        return VanillaTransformer(self.settings["n_mfcc"], self.num_classes,
                                  naive=self.settings["naive"], **self._sizes())
