"""The CAN recipe: word-aligned audio and text, cross attention (fastser.models.can).

Features: the utterance's MFCCs (40 coefficients, 25 ms window, 10 ms hop; with ``cmn``, the
default, minus their mean over the utterance: cepstral mean normalisation, which removes the
recording gain and channel) are cut into one segment per word of its word timings (``Utterance.words``: the synthetic corpus' timings,
IEMOCAP's .wdseg forced alignments; both take this same path). ``segmentation="aligned"``
(default) cuts at the word boundaries (fastser.audio.alignment.aligned_segments: markers such
as ``<s>``/``<sil>`` dropped, silences split at their midpoint, 10% overlap);
``segmentation="equal"`` is the paper's ablation: as many equal pieces as words
(equal_segments), the word times ignored.

CAN needs word timings also to predict on a new recording:
``item_from_audio(waveform, words=...)`` (``fastser predict --words FILE`` with a .wdseg file
or a JSON list of [word, start, end]; ``Recognizer.predict(path, words=...)``); without them
it raises. Words the training data did not have map to the ``<unk>`` token (their share among
the utterances collated since the last report, training and validation, is reported as
``unknown_words`` in the epoch logs).

The vocabulary is built from the training items' words in ``fit_extra`` (or given as the
config key ``vocabulary``); items keep their words and ``collate`` turns them into token ids.
MFCC standardisation statistics are taken from the training items too and copied into the
model's buffers. Both travel through ``extra_state``/``load_extra_state``, so a checkpoint
alone rebuilds the recipe (``Recognizer.from_checkpoint``, ``fastser export``).

Config keys: embed_dim (300), hidden (128), word_hidden (128), heads (4), dropout (0.3),
alpha (0.1), segmentation ("aligned" | "equal"), overlap (0.1), cmn (True), glove (path of a GloVe-format
file to initialise the embeddings, None), min_count (1: words seen fewer times in training
are unknown), vocabulary (list of words, None: built from the training data), naive (False:
the fused cross attention op; True: the reference PyTorch op).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from fastser.audio.alignment import (MARKERS, WordTiming, aligned_segments, equal_segments,
                                     word_frame_ranges)
from fastser.audio.features import MFCC
from fastser.audio.io import validate_waveform
from fastser.data.corpus import Utterance
from fastser.models.can import CAN, CANInference, can_loss, fuse_predictions
from fastser.models.can_text import PAD_ID, UNK_ID, GloveCoverage, Vocabulary, load_glove
from fastser.train.recipe import SAMPLE_RATE, Batch, Predictions, Recipe

log = logging.getLogger(__name__)

SEGMENTATIONS = ("aligned", "equal")
DEFAULTS: dict[str, Any] = {
    "embed_dim": 300, "hidden": 128, "word_hidden": 128, "heads": 4, "dropout": 0.3,
    "alpha": 0.1, "segmentation": "aligned", "overlap": 0.1, "cmn": True, "glove": None,
    "min_count": 1,
    "vocabulary": None, "naive": False,
}
_FOLDED_MARKERS = frozenset(m.casefold() for m in MARKERS)


class CanItem(NamedTuple):
    """One utterance: its L words, the MFCC frames of its word segments back to back
    ``frames`` (Σ frame_counts, 40) with ``frame_counts`` int64 (L,), and its class (-1:
    unknown)."""

    words: tuple[str, ...]
    frames: Tensor
    frame_counts: Tensor
    label: int


class CanRecipe(Recipe):
    name = "can"
    defaults = DEFAULTS
    demo_config: dict[str, Any] = {"embed_dim": 64, "hidden": 64, "word_hidden": 64}
    demo_train: dict[str, Any] = {"epochs": 12, "batch_size": 16, "lr": 2e-3}

    def __init__(self, label_names: Sequence[str], **config: Any) -> None:
        super().__init__(label_names, **config)
        if self.settings["segmentation"] not in SEGMENTATIONS:
            raise ValueError(f"can: segmentation must be one of {SEGMENTATIONS}, got "
                             f"{self.settings['segmentation']!r}")
        words = self.settings["vocabulary"]
        self.vocabulary = None if words is None else Vocabulary(words)
        self.feature_stats: tuple[Tensor, Tensor] | None = None
        self.glove_coverage: GloveCoverage | None = None
        self.mfcc = MFCC(SAMPLE_RATE, 40, win_ms=25.0, hop_ms=10.0)
        self._tokens_seen = self._tokens_unknown = 0

    # -- features ------------------------------------------------------------------------------
    def item_from_audio(self, waveform: Tensor, utterance: Utterance | None = None, *,
                        words: Sequence[WordTiming] | None = None) -> CanItem:
        """An item from a 16 kHz waveform and the word timings of ``utterance`` (training,
        evaluation) or ``words`` (a new recording: label -1)."""
        if utterance is None:
            if words is None:
                raise ValueError("can: CAN cuts the audio at word boundaries and needs the "
                                 "recording's word timings; pass words=[WordTiming(...), ...] "
                                 "(fastser predict --words FILE)")
            return self.item_from_words(waveform, words)
        if not utterance.words:
            raise ValueError(f"can: utterance {utterance.id!r} has no word timings "
                             "(Utterance.words); CAN needs a forced alignment (e.g. IEMOCAP's "
                             ".wdseg files)")
        label = self.label_index(utterance.label)
        try:
            return self.item_from_words(waveform, utterance.words, label)
        except ValueError as error:
            raise ValueError(f"can: utterance {utterance.id!r}: {error}") from None

    def item_from_words(self, waveform: Tensor, words: Sequence[WordTiming],
                        label: int = -1) -> CanItem:
        """An item from a 16 kHz waveform (N,) or (channels, N) and its word timings
        (markers such as ``<sil>`` are dropped; ValueError for an empty transcript, words
        outside the audio, unsorted or overlapping words, audio shorter than one 25 ms frame,
        NaN/inf samples)."""
        waveform = validate_waveform(waveform, SAMPLE_RATE, warn=False)
        num_samples = waveform.shape[0]
        if self.settings["segmentation"] == "aligned":
            segments = aligned_segments(words, num_samples, SAMPLE_RATE,
                                        overlap=self.settings["overlap"])
            kept, starts, ends = segments.words, segments.starts, segments.ends
        else:
            kept = [w.word for w in words if w.word.casefold() not in _FOLDED_MARKERS]
            starts, ends = equal_segments(len(kept), num_samples,
                                          overlap=self.settings["overlap"])
        mfcc = self.mfcc(waveform)  # (T, 40); ValueError below one frame
        if self.settings["cmn"]:
            mfcc = mfcc - mfcc.mean(dim=0)
        first, last = word_frame_ranges(starts, ends, num_samples, n_fft=self.mfcc.n_fft,
                                        hop_length=self.mfcc.hop_length)
        frames = torch.cat([mfcc[a:b] for a, b in zip(first.tolist(), last.tolist())])
        return CanItem(tuple(kept), frames, last - first, label)

    # -- vocabulary and statistics -------------------------------------------------------------
    def fit_extra(self, train_items: Sequence[CanItem]) -> None:
        """The vocabulary (unless configured) and the MFCC mean/std of the training items."""
        if self.settings["vocabulary"] is None:
            self.vocabulary = Vocabulary.build((item.words for item in train_items),
                                               self.settings["min_count"])
        frames = torch.cat([item.frames for item in train_items]).double()
        self.feature_stats = (frames.mean(0).float(), frames.std(0).clamp_min(1e-5).float())

    def extra_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.vocabulary is not None:
            extra["vocabulary"] = list(self.vocabulary.words)
        if self.feature_stats is not None:
            extra["feature_mean"], extra["feature_std"] = self.feature_stats
        return extra

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "vocabulary" in state:
            self.vocabulary = Vocabulary(state["vocabulary"])
        if "feature_mean" in state:
            self.feature_stats = (state["feature_mean"], state["feature_std"])

    def example_batch(self) -> Batch:
        """Two utterances of low noise (3 s, 2.5 s) with evenly spaced words of the
        vocabulary, for tracing and exporting."""
        vocabulary = self._require_vocabulary()
        gen = torch.Generator().manual_seed(0)
        known = list(vocabulary.words) or ["unknown"]
        items = []
        for seconds, count in ((3.0, 6), (2.5, 4)):
            wave = 0.05 * torch.randn(int(seconds * SAMPLE_RATE), generator=gen)
            step = seconds / count
            words = [WordTiming(known[i % len(known)], i * step, (i + 1) * step)
                     for i in range(count)]
            items.append(self.item_from_words(wave, words))
        return self.collate(items)

    def _require_vocabulary(self) -> Vocabulary:
        if self.vocabulary is None:
            raise ValueError("can: no vocabulary yet; call fit_extra(train_items) (the trainer "
                             "does) or pass the config key vocabulary=[...]")
        return self.vocabulary

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        vocabulary, s = self._require_vocabulary(), self.settings
        model = CAN(len(vocabulary), self.num_classes, embed_dim=s["embed_dim"],
                    hidden=s["hidden"], word_hidden=s["word_hidden"], heads=s["heads"],
                    dropout=s["dropout"], alpha=s["alpha"], naive=s["naive"])
        if self.feature_stats is not None:
            model.audio.feature_mean.copy_(self.feature_stats[0])
            model.audio.feature_std.copy_(self.feature_stats[1])
        if s["glove"] is not None:
            vectors, found, self.glove_coverage = load_glove(s["glove"], vocabulary,
                                                             s["embed_dim"])
            model.text.load_vectors(vectors, found)
            log.info("can: GloVe %s: %s", s["glove"], self.glove_coverage)
        return model

    # -- batches -------------------------------------------------------------------------------
    def collate(self, items: Sequence[CanItem]) -> Batch:
        vocabulary = self._require_vocabulary()
        if len(items) == 0:
            raise ValueError("can: empty batch")
        tokens, word_frames = [], []
        for index, item in enumerate(items):
            if len(item.words) == 0 or len(item.words) != item.frame_counts.shape[0]:
                raise ValueError(f"can: item {index}: text and audio step counts disagree "
                                 f"({len(item.words)} words, {item.frame_counts.shape[0]} "
                                 f"audio segments)")
            tokens.append(vocabulary.encode(item.words))
            word_frames.extend(item.frames.split(item.frame_counts.tolist()))
        token_ids = pad_sequence(tokens, batch_first=True, padding_value=PAD_ID)
        self._tokens_seen += sum(t.numel() for t in tokens)
        self._tokens_unknown += int(sum((t == UNK_ID).sum() for t in tokens))
        return {
            "token_ids": token_ids,
            "frames": pad_sequence(word_frames, batch_first=True),
            "frame_lengths": torch.cat([item.frame_counts for item in items]),
            "lengths": torch.tensor([len(t) for t in tokens], dtype=torch.long),
            "labels": torch.tensor([item.label for item in items], dtype=torch.long),
        }

    def epoch_logs(self) -> dict[str, Any]:
        logs: dict[str, Any] = {}
        if self._tokens_seen:
            logs["unknown_words"] = self._tokens_unknown / self._tokens_seen
        if self.glove_coverage is not None:
            logs["glove_coverage"] = self.glove_coverage.fraction
        self._tokens_seen = self._tokens_unknown = 0
        return logs

    def _inputs(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return batch["token_ids"], batch["frames"], batch["frame_lengths"], batch["lengths"]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits, logits_text, logits_audio = model(*self._inputs(batch))
        return can_loss(logits, logits_text, logits_audio, batch["labels"],
                        self.settings["alpha"])

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        return Predictions(fuse_predictions(*model(*self._inputs(batch)),
                                            self.settings["alpha"]))

    def export_module(self, model: nn.Module) -> nn.Module:
        return CANInference(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return self._inputs(batch)
