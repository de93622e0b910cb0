"""The GLRF recipe: 2 s MFCC segments, GLRA segment scorer, head-k-pooling loss
(fastser.models.glrf, fastser.ops.head_k_pooling_loss).

Segments are the fixed windows of fastser.audio.segmentation.fixed_windows: ``window`` s
(2 s) starting every ``train_hop`` s (0.2 s) in training (:meth:`GLRFRecipe.loss`) and every
``test_hop`` s (0.4 s) in evaluation and prediction (:meth:`predict`, :meth:`export_inputs`,
:meth:`segment_spans`); an utterance shorter than a window gives one zero-padded window.
The features of a window are its MFCCs (40 coefficients, 25 ms / 10 ms, 198 frames for 2 s)
with no top-dB clamp (only the 1e-10 power floor), so they depend on the window's samples
alone: the MFCC frames of window k are frames ``k·hop/10 ms ...`` of the whole (zero-padded
to at least one window) utterance.  Items therefore keep the utterance's MFCC frames, computed
once; the loss and the predictions cut them into windows at their own hop (a strided view and
one gather), so each hop is chosen where the batch is used and nothing is computed twice.
Streaming recognition (fastser.streaming) computes the same frames incrementally.

Batches pack the segments of all utterances back to back with per-utterance counts (the
head-k-pooling op's layout).  Training minimises the head-k-pooling loss: per utterance, the
top ``k`` (70%) of segments by their label-class logit take a one-vs-rest BCE, the others a
BCE towards 0 on the eligible negative classes (not the label; not the ``neutral`` class for
an emotional utterance), weighted by ``negative_weight``.  An utterance's scores are the mean
of its segments' sigmoid scores; predictions also carry the segment scores and counts, so
evaluation reports pure accuracy.

Config keys: n_mfcc (40), window (2.0 s), train_hop (0.2 s), test_hop (0.4 s; both hops
multiples of the 10 ms MFCC hop), channels (128), blocks (3), heads (4), local_kernel (3),
reduction (4), dropout (0.1), k (0.7), negative_weight (1.0), neutral ("neutral": the label
treated as the neutral class when the corpus has it; None: no neutral class), naive (False:
the fused loss op; True: the vectorised reference loss).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from fastser.audio.alignment import WordTiming
from fastser.audio.features import MFCC
from fastser.audio.segmentation import num_windows, seconds_to_samples, window_starts
from fastser.data.corpus import Utterance
from fastser.models.glrf import GLRF, GLRFInference, utterance_scores
from fastser.ops import head_k_pooling_loss
from fastser.ops.reference import head_k_pooling_loss_reference
from fastser.train.recipe import SAMPLE_RATE, Batch, Predictions, Recipe

DEFAULTS: dict[str, Any] = {
    "n_mfcc": 40, "window": 2.0, "train_hop": 0.2, "test_hop": 0.4, "channels": 128,
    "blocks": 3, "heads": 4, "local_kernel": 3, "reduction": 4, "dropout": 0.1, "k": 0.7,
    "negative_weight": 1.0, "neutral": "neutral", "naive": False,
}
MODEL_KEYS = ("n_mfcc", "channels", "blocks", "heads", "local_kernel", "reduction", "dropout")


class GLRFItem(NamedTuple):
    """One utterance: the MFCC frames (F, n_mfcc) of its audio zero-padded to at least one
    window, its length in samples and its class (-1: unknown)."""

    frames: Tensor
    num_samples: int
    label: int


class GLRFRecipe(Recipe):
    name = "glrf"
    defaults = DEFAULTS
    demo_config: dict[str, Any] = {"channels": 48, "blocks": 2, "heads": 4}
    demo_train: dict[str, Any] = {"epochs": 8, "batch_size": 16, "lr": 2e-3}

    def __init__(self, label_names: Sequence[str], **config: Any) -> None:
        super().__init__(label_names, **config)
        s = self.settings
        self.mfcc = MFCC(SAMPLE_RATE, s["n_mfcc"], win_ms=25.0, hop_ms=10.0, top_db=None)
        self.window_samples = seconds_to_samples(s["window"], SAMPLE_RATE, "window")
        if self.window_samples < self.mfcc.n_fft:
            raise ValueError(f"glrf: window ({s['window']} s) is shorter than one MFCC frame")
        self.window_frames = self.mfcc.num_frames(self.window_samples)
        self.train_hop_samples = self._hop("train_hop")
        self.test_hop_samples = self._hop("test_hop")
        neutral = s["neutral"]
        if neutral is not None and neutral not in self.label_names and neutral != "neutral":
            raise ValueError(f"glrf: neutral label {neutral!r} is not one of {self.label_names}")
        self.neutral_class = (self.label_names.index(neutral)
                              if neutral in self.label_names else None)
        if not 0.0 < s["k"] <= 1.0:
            raise ValueError(f"glrf: k must be in (0, 1], got {s['k']}")
        self.feature_stats: tuple[Tensor, Tensor] | None = None

    def _hop(self, key: str) -> int:
        hop = seconds_to_samples(self.settings[key], SAMPLE_RATE, key)
        if hop % self.mfcc.hop_length or hop > self.window_samples:
            raise ValueError(f"glrf: {key} ({self.settings[key]} s) must be a multiple of the "
                             f"10 ms MFCC hop and at most the window ({self.settings['window']} s)")
        return hop

    # -- features ------------------------------------------------------------------------------
    def item_from_audio(self, waveform: Tensor, utterance: Utterance | None = None, *,
                        words: Sequence[WordTiming] | None = None) -> GLRFItem:
        if not isinstance(waveform, Tensor) or waveform.dim() != 1 or not waveform.is_floating_point():
            raise ValueError("glrf: waveform must be a 1-D float tensor (N,) of 16 kHz samples, "
                             f"got {getattr(waveform, 'shape', type(waveform).__name__)}")
        num_samples = waveform.shape[0]
        if num_samples == 0:
            raise ValueError("glrf: empty audio (0 samples)")
        if not bool(torch.isfinite(waveform).all()):
            raise ValueError("glrf: the waveform holds NaN or infinite samples")
        padded = nn.functional.pad(waveform.float(), (0, max(0, self.window_samples - num_samples)))
        label = -1 if utterance is None else self.label_index(utterance.label)
        return GLRFItem(self.mfcc(padded), num_samples, label)

    def fit_extra(self, train_items: Sequence[GLRFItem]) -> None:
        """Per-coefficient MFCC mean and std of the training items (the model's input
        standardisation; they travel in its buffers)."""
        frames = torch.cat([item.frames for item in train_items]).double()
        self.feature_stats = (frames.mean(0).float(), frames.std(0).clamp_min(1e-5).float())

    def extra_state(self) -> dict[str, Any]:
        if self.feature_stats is None:
            return {}
        return {"feature_mean": self.feature_stats[0], "feature_std": self.feature_stats[1]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.feature_stats = ((state["feature_mean"], state["feature_std"])
                              if "feature_mean" in state else None)

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = GLRF(self.num_classes, **{key: self.settings[key] for key in MODEL_KEYS})
        if self.feature_stats is not None:
            model.feature_mean.copy_(self.feature_stats[0])
            model.feature_std.copy_(self.feature_stats[1])
        return model

    # -- batches -------------------------------------------------------------------------------
    def collate(self, items: Sequence[GLRFItem]) -> Batch:
        """``frames`` (B, F_max, n_mfcc) zero-padded, ``num_samples`` (B,), ``labels`` (B,)."""
        if len(items) == 0:
            raise ValueError("glrf: empty batch")
        return {"frames": pad_sequence([item.frames for item in items], batch_first=True),
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
        if s["naive"]:
            return head_k_pooling_loss_reference(model(features), counts, batch["labels"],
                                                 s["k"], self.neutral_class,
                                                 s["negative_weight"])
        return head_k_pooling_loss(model(features), counts, batch["labels"], k=s["k"],
                                   neutral_class=self.neutral_class,
                                   negative_weight=s["negative_weight"])

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        features, counts = self.segments(batch, self.test_hop_samples)
        segment_probs = torch.sigmoid(model(features))
        return Predictions(utterance_scores(segment_probs, counts), segment_probs, counts)

    def export_module(self, model: nn.Module) -> nn.Module:
        return GLRFInference(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        features, counts = self.segments(batch, self.test_hop_samples)
        return features.contiguous(), counts

    def segment_spans(self, num_samples: int) -> list[tuple[float, float]]:
        starts = window_starts(num_samples, self.window_samples, self.test_hop_samples)
        return [(start / SAMPLE_RATE, min(start + self.window_samples, num_samples) / SAMPLE_RATE)
                for start in starts.tolist()]
