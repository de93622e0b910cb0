"""The GLRF recipe: 2 s MFCC segments, GLRA segment scorer, head-k-pooling loss
(fastser.methods.glrf.model, fastser.ops.head_k_pooling_loss).

Segments are the fixed windows of fastser.audio.segmentation.fixed_windows: ``window``
seconds starting every ``train_hop`` seconds in training (:meth:`GLRFRecipe.loss`) and every
``test_hop`` seconds in evaluation and prediction (:meth:`predict`, :meth:`export_inputs`,
:meth:`segment_spans`); an utterance shorter than a window gives one zero-padded window.
The features of a window are its MFCCs (25 ms frames every 10 ms: 198 frames for 2 s)
with no top-dB clamp (only the 1e-10 power floor), so they depend on the window's samples
alone: the MFCC frames of window k are frames ``k·hop/10 ms ...`` of the whole (zero-padded
to at least one window) utterance.  Items therefore keep the utterance's MFCC frames, computed
once; the loss and the predictions cut them into windows at their own hop (a strided view and
one gather), so each hop is chosen where the batch is used and nothing is computed twice.
Streaming recognition (fastser.inference.streaming) computes the same frames incrementally.

Batches pack the segments of all utterances back to back with per-utterance counts (the
head-k-pooling op's layout).  Training minimises the head-k-pooling loss: per utterance, the
top ``k`` fraction of segments by their label-class logit take a one-vs-rest BCE, the others a
BCE towards 0 on the eligible negative classes (not the label; not the ``neutral`` class for
an emotional utterance), weighted by ``negative_weight``.  An utterance's scores are the mean
of its segments' sigmoid scores; predictions also carry the segment scores and counts, so
evaluation reports pure accuracy.

Settings: :class:`GLRFSettings` (``fastser settings glrf`` lists them with their defaults);
``implementation="reference"`` trains with the vectorised reference loss instead of the fused op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from fastser.audio.alignment import WordTiming
from fastser.audio.features import MFCC
from fastser.audio.io import SAMPLE_RATE
from fastser.audio.segmentation import num_windows, seconds_to_samples, window_starts
from fastser.data.collate import pad_sequences
from fastser.data.corpus import Utterance
from fastser.errors import SettingsError
from fastser.methods.glrf.model import (BRANCHES, FUSIONS, GLRF, SCORERS, GLRFInference,
                                        utterance_scores)
from fastser.methods.glrf.streaming import GLRFStreamingFeatures
from fastser.ops import head_k_pooling_loss
from fastser.ops.reference import head_k_pooling_loss_reference
from fastser.train.kit import AugmentSettings, FeatureStats, Preset, redefault, setting
from fastser.train.recipe import Batch, Embeddings, Predictions, Recipe, StreamingFeatures


@dataclass(frozen=True, kw_only=True)
class GLRFSettings(AugmentSettings):
    #: on by default: measured on real speech (bench/RESULTS.md, "Default settings on real
    #: speech")
    speaker_norm: bool = redefault(AugmentSettings, "speaker_norm", True)
    #: fastser 0.1 had no per-speaker standardisation.
    defaults_0_1 = {"speaker_norm": False}
    n_mfcc: int = setting(40, "MFCC coefficients per 25 ms frame (10 ms hop)", low=1)
    window: float = setting(2.0, "segment length in seconds", low=0.025)
    train_hop: float = setting(0.2, "seconds between segment starts in training (a multiple "
                               "of 10 ms, at most the window)", low=0.01)
    test_hop: float = setting(0.4, "seconds between segment starts in evaluation and "
                              "prediction (a multiple of 10 ms, at most the window)", low=0.01)
    channels: int = setting(128, "hidden channels of the GLRA blocks", low=1)
    blocks: int = setting(3, "GLRA blocks (each halves the frames)", low=1)
    heads: int = setting(4, "attention heads of the global branch (divides channels)", low=1)
    local_kernel: int = setting(3, "width of the local branch's temporal convolutions", low=1)
    reduction: int = setting(4, "channel reduction of the SK fusion", low=1)
    dropout: float = setting(0.1, "dropout probability", low=0.0, high=1.0, high_open=True)
    k: float = setting(0.7, "head-k-pooling: fraction of an utterance's segments treated as "
                       "emotional", low=0.0, high=1.0, low_open=True)
    negative_weight: float = setting(1.0, "weight of the BCE terms towards 0 on the other "
                                     "eligible classes", low=0.0)
    neutral: str | None = setting("neutral", "label of the neutral class, never a negative of "
                                  "an emotional segment (null: no neutral class)")
    scorer: str = setting("mlp", "segment scorer after the GLRA blocks: linear (one FC layer, "
                          "Sec. 2.1) or mlp (two, fastser's)", choices=SCORERS)
    fusion: str = setting("sk", "how a GLRA block fuses its branches: sk (selective-kernel "
                          "attention) or sum (Table 4's 'wo/ Fusion Block')", choices=FUSIONS)
    branches: str = setting("global_local", "a GLRA block's branches: global_local (attention "
                            "and convolutions) or convolutions (kernels 3 and 5, Table 4's "
                            "'wo/ Global-Local')", choices=BRANCHES)

    def check(self, method: str) -> None:
        super().check(method)
        if self.channels % self.heads:
            raise SettingsError(f"{method}: setting heads ({self.heads}) must divide channels "
                                f"({self.channels})")


MODEL_KEYS = ("n_mfcc", "channels", "blocks", "heads", "local_kernel", "reduction", "dropout",
              "scorer", "fusion", "branches")


class GLRFItem(NamedTuple):
    """One utterance: the MFCC frames (F, n_mfcc) of its audio zero-padded to at least one
    window, its length in samples and its class (-1: unknown)."""

    frames: Tensor
    num_samples: int
    label: int


class GLRFRecipe(Recipe):
    name = "glrf"
    Settings = GLRFSettings
    # Measured on the EmoDB dev speakers (bench/RESULTS.md): the last epoch, not the best
    # validation epoch of one validation speaker.
    training_defaults = {"select": "last"}
    # bf16 autocast made a whole cv on a CPU with AVX512-BF16 slower (bench/RESULTS.md)
    cpu_bf16 = False
    presets = {"demo": Preset("small model for the synthetic corpus",
                              settings={"channels": 48, "blocks": 2, "heads": 4,
                                        "speaker_norm": False},
                              training={"epochs": 8, "batch_size": 16, "lr": 2e-3}),
               # Sec. 2-3.2: the paper states no sizes and no training procedure; fastser's
               # fill them in (docs/methods.md)
               "paper": Preset("the paper's GLRF (Sec. 2-3.2): one FC scorer, SK fusion of "
                               "global and local branches, k = 70%, 2 s windows every 0.2 s "
                               "(training) / 0.4 s (test); `cv --protocol utterance-kfold` "
                               "(docs/methods.md)",
                               settings={"speaker_norm": False, "scorer": "linear",
                                         "fusion": "sk",
                                         "branches": "global_local", "k": 0.7,
                                         "window": 2.0, "train_hop": 0.2, "test_hop": 0.4,
                                         "n_mfcc": 40})}
    segment_settings = ("window", "test_hop")
    settings: GLRFSettings

    def __init__(self, label_names: Sequence[str], **settings) -> None:
        super().__init__(label_names, **settings)
        s = self.settings
        self.mfcc = MFCC(SAMPLE_RATE, s.n_mfcc, win_ms=25.0, hop_ms=10.0, top_db=None)
        self.window_samples = seconds_to_samples(s.window, SAMPLE_RATE, "window")
        if self.window_samples < self.mfcc.n_fft:
            raise SettingsError(f"glrf: window ({s.window} s) is shorter than one MFCC frame")
        self.window_frames = self.mfcc.num_frames(self.window_samples)
        self.train_hop_samples = self._hop("train_hop")
        self.test_hop_samples = self._hop("test_hop")
        neutral = s.neutral
        if neutral is not None and neutral not in self.label_names and neutral != "neutral":
            raise SettingsError(f"glrf: neutral label {neutral!r} is not one of "
                                f"{self.label_names}")
        self.neutral_class = (self.label_names.index(neutral)
                              if neutral in self.label_names else None)
        self.feature_stats: FeatureStats | None = None

    def _hop(self, key: str) -> int:
        seconds = getattr(self.settings, key)
        hop = seconds_to_samples(seconds, SAMPLE_RATE, key)
        if hop % self.mfcc.hop_length or hop > self.window_samples:
            raise SettingsError(f"glrf: {key} ({seconds} s) must be a multiple of the 10 ms "
                                f"MFCC hop and at most the window ({self.settings.window} s)")
        return hop

    # -- features ------------------------------------------------------------------------------
    def make_item(self, waveform: Tensor, utterance: Utterance | None, *,
                  words: Sequence[WordTiming] | None = None) -> GLRFItem:
        num_samples = waveform.shape[0]
        padded = nn.functional.pad(waveform, (0, max(0, self.window_samples - num_samples)))
        return GLRFItem(self.mfcc(padded), num_samples, self.label_of(utterance))

    def item_features(self, item: GLRFItem) -> Tensor:
        return item.frames

    def with_features(self, item: GLRFItem, features: Tensor) -> GLRFItem:
        return item._replace(frames=features)

    def fit_extra(self, train_items: Sequence[GLRFItem]) -> None:
        """Per-coefficient MFCC mean and std of the training items (the model's input
        standardisation; they travel in its buffers)."""
        self.feature_stats = FeatureStats.fit([item.frames for item in train_items])

    def extra_state(self) -> dict[str, Tensor]:
        return {} if self.feature_stats is None else self.feature_stats.state()

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self.feature_stats = FeatureStats.from_state(state)

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = GLRF(self.num_classes, **{key: getattr(self.settings, key) for key in MODEL_KEYS})
        if self.feature_stats is not None:
            model.feature_mean.copy_(self.feature_stats.mean)
            model.feature_std.copy_(self.feature_stats.std)
        return model

    # -- batches -------------------------------------------------------------------------------
    def make_batch(self, items: list[GLRFItem]) -> Batch:
        """``frames`` (B, F_max, n_mfcc) zero-padded, ``num_samples`` (B,), ``labels`` (B,)."""
        frames, _ = pad_sequences([item.frames for item in items])
        return {"frames": frames,
                "num_samples": torch.tensor([item.num_samples for item in items]),
                "labels": torch.tensor([item.label for item in items], dtype=torch.long)}

    def segments(self, batch: Batch, hop: int) -> tuple[Tensor, Tensor]:
        """The windows every ``hop`` samples of a batch's utterances: MFCC segments
        (S, window_frames, n_mfcc) packed utterance after utterance, and counts (B,)."""
        counts = num_windows(batch["num_samples"], self.window_samples, hop)
        most = int(counts.max())
        frames = batch["frames"]
        windows = frames.unfold(1, self.window_frames, hop // self.mfcc.hop_length)[:, :most]
        present = torch.arange(most, device=frames.device)[None, :] < counts[:, None]
        return windows[present].transpose(1, 2), counts  # (S, T, n_mfcc)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        features, counts = self.segments(batch, self.train_hop_samples)
        s = self.settings
        logits = model(features).float()  # the loss in float32 also under bf16 autocast
        if s.implementation == "reference":
            return head_k_pooling_loss_reference(logits, counts, batch["labels"],
                                                 s.k, self.neutral_class, s.negative_weight)
        return head_k_pooling_loss(logits, counts, batch["labels"], k=s.k,
                                   neutral_class=self.neutral_class,
                                   negative_weight=s.negative_weight)

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        features, counts = self.segments(batch, self.test_hop_samples)
        segment_probs = torch.sigmoid(model(features))
        return Predictions(utterance_scores(segment_probs, counts), segment_probs, counts)

    def embed(self, model: nn.Module, batch: Batch) -> Embeddings:
        """Per window the time mean of the last GLRA block (S, channels); per utterance the
        mean over its windows."""
        features, counts = self.segments(batch, self.test_hop_samples)
        segments = model.embed(features)
        return Embeddings(utterance_scores(segments, counts), segments, counts)

    def export_module(self, model: nn.Module) -> nn.Module:
        return GLRFInference(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        features, counts = self.segments(batch, self.test_hop_samples)
        return features.contiguous(), counts

    def streaming_features(self) -> StreamingFeatures:
        return GLRFStreamingFeatures(self)

    def segment_spans(self, num_samples: int) -> list[tuple[float, float]]:
        starts = window_starts(num_samples, self.window_samples, self.test_hop_samples)
        return [(start / SAMPLE_RATE, min(start + self.window_samples, num_samples) / SAMPLE_RATE)
                for start in starts.tolist()]
