"""The CAN recipe: word-aligned audio and text, cross attention (fastser.methods.can.model).

Features: the utterance's MFCCs (40 coefficients, 25 ms window, 10 ms hop; with ``cmn``, the
default, minus their mean over the utterance: cepstral mean normalisation, which removes the
recording gain and channel) are cut into one segment per word of its word timings
(``Utterance.words``: the synthetic corpus' timings, IEMOCAP's .wdseg forced alignments; both
take this same path). ``segmentation="aligned"`` (default) cuts at the word boundaries
(fastser.audio.alignment.aligned_segments: markers such as ``<s>``/``<sil>`` dropped, silences
split at their midpoint, neighbours sharing ``overlap`` of their duration);
``segmentation="equal"`` is the paper's ablation: as many equal pieces as words
(equal_segments), the word times ignored, so an utterance without word timings but with a
transcript (EmoDB) takes the transcript's words. With ``speaker_norm``, the frames of an item
(its word segments back to back) are standardised with its speaker's statistics.

CAN needs word timings also to predict on a new recording:
``item_from_audio(waveform, words=...)`` (``fastser predict --words FILE`` with a .wdseg file
or a JSON list of [word, start, end]; ``Recognizer.predict(path, words=...)``); without them,
or with timings that do not fit the audio, it raises :class:`WordTimingsError`. Words the
training data did not have map to the ``<unk>`` token (their share among the utterances
collated since the last report, training and validation, is reported as ``unknown_words`` in
the epoch logs).

The vocabulary is built from the training items' words in ``fit_extra`` (or given as the
setting ``vocabulary``), with ``vocabulary_source="training+glove"`` joined by the words of the
GloVe file (so that a test word GloVe covers keeps its pretrained vector instead of becoming
``<unk>``); items keep their words and ``collate`` turns them into token ids.
MFCC standardisation statistics are taken from the training items too and copied into the
model's buffers. Both travel through ``extra_state``/``load_extra_state``, so a checkpoint
alone rebuilds the recipe (``Recognizer.from_checkpoint``, ``fastser export``).

Settings: :class:`CanSettings` (``fastser settings can`` lists them with their defaults);
``implementation="reference"`` runs the cross attention on the reference PyTorch op instead of
the fused one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from fastser.audio.alignment import (MARKERS, WordTiming, aligned_segments, equal_segments,
                                     word_frame_ranges)
from fastser.audio.features import MFCC
from fastser.audio.io import SAMPLE_RATE
from fastser.data.collate import pad_sequences
from fastser.data.corpus import Corpus, Utterance
from fastser.errors import SettingsError, UserError
from fastser.methods.can.model import (CAN, SIDE_HEADS, CANInference, N_MFCC, can_loss,
                                       fuse_predictions)
from fastser.methods.can.text import (PAD, PAD_ID, UNK, UNK_ID, GloveCoverage, Vocabulary,
                                      glove_words, load_glove, normalize_word,
                                      transcript_words)
from fastser.train.kit import (AugmentSettings, ClassWeightSettings, FeatureStats, Preset,
                               class_weights, setting)
from fastser.train.recipe import Batch, Embeddings, Predictions, Recipe

log = logging.getLogger(__name__)

SEGMENTATIONS = ("aligned", "equal")
VOCABULARY_SOURCES = ("training", "training+glove")
#: The MFCC frame: 25 ms windows every 10 ms.
WIN_MS, HOP_MS = 25.0, 10.0
_FOLDED_MARKERS = frozenset(m.casefold() for m in MARKERS)


class WordTimingsError(UserError):
    """Word timings that are missing or do not fit the audio: CAN cuts the audio at word
    boundaries, so every utterance and every new recording needs them."""


@dataclass(frozen=True, kw_only=True)
class CanSettings(AugmentSettings, ClassWeightSettings):
    embed_dim: int = setting(300, "word embedding size (the vectors' size when glove is set)",
                             low=1)
    hidden: int = setting(128, "hidden units per direction of the text BLSTM and the "
                          "utterance-level audio BLSTM", low=1)
    word_hidden: int = setting(128, "hidden units per direction of the word-level audio "
                               "BLSTM", low=1)
    heads: int = setting(4, "cross attention heads (divides 2 * hidden)", low=1)
    dropout: float = setting(0.3, "dropout probability on every BLSTM's outputs", low=0.0,
                             high=1.0, high_open=True)
    alpha: float = setting(0.1, "weight of the text-only and audio-only heads: in the loss "
                           "CE + alpha (CE_T + CE_A) and the prediction p p_T^alpha p_A^alpha",
                           low=0.0)
    segmentation: str = setting("aligned", "aligned: one audio segment per word, cut at the "
                                "word boundaries; equal: as many equal pieces as words (the "
                                "paper's ablation)", choices=SEGMENTATIONS)
    overlap: float = setting(0.1, "share of two neighbouring words' combined duration that "
                             "their audio segments have in common", low=0.0, high=1.0,
                             high_open=True)
    cmn: bool = setting(True, "subtract each utterance's MFCC mean (cepstral mean "
                        "normalisation: removes the recording gain and channel)")
    glove: str | None = setting(None, "GloVe-format text file whose vectors initialise the "
                                "word embeddings (null: random embeddings)", path=True)
    min_count: int = setting(1, "times a word must occur in the training data to enter the "
                             "vocabulary (rarer words are unknown)", low=1)
    vocabulary: tuple[str, ...] | None = setting(None, "the vocabulary's words (null: the "
                                                 "words of the training data)")
    vocabulary_source: str = setting(
        "training", "words of a vocabulary built in training: the training data's, or those "
        "and the GloVe file's (words GloVe covers keep their vectors at test time)",
        choices=VOCABULARY_SOURCES)
    glove_max_words: int | None = setting(
        None, "with training+glove: the GloVe file's first (most frequent) words taken at most "
        "(null: all)", low=1)
    side_heads: str = setting(
        "both_contexts", "what the text-only and audio-only heads read: own_context (c_tt and "
        "c_aa alone, Eq. 11-12) or both_contexts ([c_tt; c_at] and [c_aa; c_ta])",
        choices=SIDE_HEADS)
    stop_gradient: bool = setting(
        True, "stop-gradient on the crossed contexts' attention weights (false: Table 4's "
        "'- stop-gradient', run on the PyTorch cross attention)")
    cross_attention: bool = setting(
        True, "the cross attention (false: Table 4's '- cross attention': the prediction from "
        "[c_tt; c_aa] alone, no side heads, no alignment loss)")

    def check(self, method: str) -> None:
        super().check(method)
        if (2 * self.hidden) % self.heads:
            raise SettingsError(f"{method}: setting heads ({self.heads}) must divide the "
                                f"encoders' output size 2 * hidden = {2 * self.hidden}")
        if self.vocabulary is not None:
            if not self.vocabulary:
                raise SettingsError(f"{method}: setting vocabulary: needs at least one word "
                                    "(null: the words of the training data)")
            folded = [normalize_word(word) for word in self.vocabulary]
            duplicates = sorted({word for word in folded if folded.count(word) > 1})
            if duplicates:
                raise SettingsError(f"{method}: setting vocabulary: duplicate words (after "
                                    f"case folding) {duplicates[:10]}")
            if PAD in folded or UNK in folded:
                raise SettingsError(f"{method}: setting vocabulary: {PAD} and {UNK} are "
                                    "reserved, not words")
        if self.vocabulary_source == "training+glove" and self.glove is None:
            raise SettingsError(f"{method}: setting vocabulary_source=training+glove needs the "
                                f"GloVe vectors: set glove=PATH (a GloVe-format text file)")


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
    Settings = CanSettings
    # bf16 autocast did not make its whole cv faster on a CPU with AVX512-BF16 (its BLSTMs run
    # in float32 anyway; bench/RESULTS.md)
    cpu_bf16 = False
    presets = {"demo": Preset("small model for the synthetic corpus",
                              settings={"embed_dim": 64, "hidden": 64, "word_hidden": 64},
                              training={"epochs": 12, "batch_size": 16, "lr": 2e-3}),
               # Sec. 4.2; filled in (docs/methods.md): 100 epochs at most, early stopping on
               # the validation loss, a constant learning rate, no CMN (not in the paper)
               "paper": Preset("the paper's CAN (Sec. 3-4.2): GloVe 300-d over the training "
                               "and GloVe words (set glove=PATH), Eq. 11-12 side heads, Adam "
                               "1e-3, batch 64, clipping 1.0, patience 10 (docs/methods.md)",
                               settings={"embed_dim": 300, "hidden": 128, "word_hidden": 128,
                                         "heads": 4, "dropout": 0.3, "alpha": 0.1,
                                         "segmentation": "aligned", "overlap": 0.1,
                                         "cmn": False, "side_heads": "own_context",
                                         "stop_gradient": True, "cross_attention": True,
                                         "vocabulary_source": "training+glove"},
                               training={"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                                         "schedule": "constant", "warmup_fraction": 0.0,
                                         "batch_size": 64, "grad_clip": 1.0, "epochs": 100,
                                         "patience": 10, "monitor": "loss"})}
    #: One MFCC frame (25 ms).
    min_samples = int(SAMPLE_RATE * WIN_MS / 1000)
    settings: CanSettings

    def __init__(self, label_names: Sequence[str], **settings: Any) -> None:
        super().__init__(label_names, **settings)
        words = self.settings.vocabulary
        self.vocabulary = None if words is None else Vocabulary(words)
        self.feature_stats: FeatureStats | None = None
        self.class_weights: Tensor | None = None
        self.glove_coverage: GloveCoverage | None = None
        self.mfcc = MFCC(SAMPLE_RATE, N_MFCC, win_ms=WIN_MS, hop_ms=HOP_MS)
        self._tokens_seen = self._tokens_unknown = 0

    # -- features ------------------------------------------------------------------------------
    def make_item(self, waveform: Tensor, utterance: Utterance | None, *,
                  words: Sequence[WordTiming] | None = None) -> CanItem:
        """The item of a waveform and the word timings of ``utterance`` (training,
        evaluation) or ``words`` (a new recording: label -1)."""
        if utterance is None:
            if words is None:
                raise WordTimingsError("no word timings: CAN cuts the audio at word boundaries "
                                       "and needs the recording's word timings; pass "
                                       "words=[WordTiming(...), ...] (fastser predict --words "
                                       "FILE)")
            timings = words
        else:
            timings = utterance.words or self._untimed_words(utterance)
            if not timings:
                raise WordTimingsError("no word timings (Utterance.words): CAN cuts the audio "
                                       "at word boundaries and needs a forced alignment (e.g. "
                                       "IEMOCAP's .wdseg files), or segmentation=equal and a "
                                       "transcript")
        label = self.label_of(utterance)
        try:
            starts, ends, kept = self._segments(timings, waveform.shape[0])
        except ValueError as error:  # word timings that do not fit the audio
            raise WordTimingsError(str(error)) from None
        return self._item(waveform, starts, ends, kept, label)

    def _untimed_words(self, utterance: Utterance) -> tuple[WordTiming, ...]:
        """The transcript's words with zero-length timings, for equal segmentation (which
        ignores the times); none for aligned segmentation or without a transcript."""
        if self.settings.segmentation != "equal" or not utterance.transcript:
            return ()
        return tuple(WordTiming(word, 0.0, 0.0) for word in transcript_words(utterance.transcript))

    def requirements(self, corpus: Corpus) -> list[str]:
        """Besides the classes: word timings for every utterance (a transcript is enough
        with ``segmentation="equal"``)."""
        reasons = super().requirements(corpus)
        lacking = sum(1 for u in corpus if not (u.words or self._untimed_words(u)))
        if lacking:
            needs = ("word timings or a transcript" if self.settings.segmentation == "equal"
                     else "word timings (segmentation=equal needs only a transcript)")
            reasons.append(f"cuts the audio at words: needs {needs}, which {lacking} of "
                           f"{len(corpus)} utterance(s) lack")
        return reasons

    def _segments(self, words: Sequence[WordTiming],
                  num_samples: int) -> tuple[Tensor, Tensor, list[str]]:
        """Sample ranges [start, end) of the kept words (markers such as ``<sil>`` dropped);
        ValueError for an empty transcript, words outside the audio, unsorted or overlapping
        words."""
        s = self.settings
        if s.segmentation == "aligned":
            segments = aligned_segments(words, num_samples, SAMPLE_RATE, overlap=s.overlap)
            return segments.starts, segments.ends, segments.words
        kept = [w.word for w in words if w.word.casefold() not in _FOLDED_MARKERS]
        starts, ends = equal_segments(len(kept), num_samples, overlap=s.overlap)
        return starts, ends, kept

    def _item(self, waveform: Tensor, starts: Tensor, ends: Tensor, words: list[str],
              label: int) -> CanItem:
        num_samples = waveform.shape[0]
        mfcc = self.mfcc(waveform)  # (T, 40)
        if self.settings.cmn:
            mfcc = mfcc - mfcc.mean(dim=0)
        first, last = word_frame_ranges(starts, ends, num_samples, n_fft=self.mfcc.n_fft,
                                        hop_length=self.mfcc.hop_length)
        frames = torch.cat([mfcc[a:b] for a, b in zip(first.tolist(), last.tolist())])
        return CanItem(tuple(words), frames, last - first, label)

    def item_features(self, item: CanItem) -> Tensor:
        return item.frames

    def with_features(self, item: CanItem, features: Tensor) -> CanItem:
        return item._replace(frames=features)

    # -- vocabulary and statistics -------------------------------------------------------------
    def fit_extra(self, train_items: Sequence[CanItem]) -> None:
        """The vocabulary (unless set: the training words, joined by the GloVe file's with
        ``vocabulary_source="training+glove"``), the MFCC mean/std of the training items and
        the class weights of their labels (``class_weighted``)."""
        s = self.settings
        if s.vocabulary is None:
            self.vocabulary = Vocabulary.build((item.words for item in train_items),
                                               s.min_count)
            if not self.vocabulary.words:
                raise SettingsError(f"{self.name}: no word of the training data occurs "
                                    f"min_count = {s.min_count} times; lower min_count")
            if s.vocabulary_source == "training+glove":
                known = set(self.vocabulary.words)
                extra = [w for w in glove_words(s.glove, s.glove_max_words) if w not in known]
                self.vocabulary = Vocabulary(self.vocabulary.words + extra)
        self.feature_stats = FeatureStats.fit([item.frames for item in train_items])
        if s.class_weighted:
            self.class_weights = class_weights([item.label for item in train_items],
                                               self.num_classes)

    def extra_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.vocabulary is not None:
            extra["vocabulary"] = list(self.vocabulary.words)
        if self.feature_stats is not None:
            extra.update(self.feature_stats.state())
        if self.class_weights is not None:
            extra["class_weights"] = self.class_weights
        return extra

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "vocabulary" in state:
            self.vocabulary = Vocabulary(state["vocabulary"])
        self.feature_stats = FeatureStats.from_state(state)
        self.class_weights = state.get("class_weights")

    def example_batch(self, seconds: Sequence[float] = (3.0, 2.5)) -> Batch:
        """Utterances of low noise (3 s, 2.5 s by default) with evenly spaced words of the
        vocabulary (two a second, at least one), for tracing and exporting."""
        vocabulary = self._require_vocabulary()
        gen = torch.Generator().manual_seed(0)
        known = list(vocabulary.words) or ["unknown"]
        items = []
        for duration in seconds:
            count = max(1, round(2 * duration))
            wave = 0.05 * torch.randn(round(duration * SAMPLE_RATE), generator=gen)
            step = duration / count
            words = [WordTiming(known[i % len(known)], i * step, (i + 1) * step)
                     for i in range(count)]
            items.append(self.item_from_audio(wave, words=words))
        return self.collate(items)

    def _require_vocabulary(self) -> Vocabulary:
        if self.vocabulary is None:
            raise ValueError("can: no vocabulary yet; call fit_extra(train_items) (the trainer "
                             "does) or pass the setting vocabulary=[...]")
        return self.vocabulary

    # -- model ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        vocabulary, s = self._require_vocabulary(), self.settings
        model = CAN(len(vocabulary), self.num_classes, embed_dim=s.embed_dim, hidden=s.hidden,
                    word_hidden=s.word_hidden, heads=s.heads, dropout=s.dropout, alpha=s.alpha,
                    implementation=s.implementation, side_heads=s.side_heads,
                    stop_gradient=s.stop_gradient, cross_attention=s.cross_attention)
        if self.feature_stats is not None:
            model.audio.feature_mean.copy_(self.feature_stats.mean)
            model.audio.feature_std.copy_(self.feature_stats.std)
        glove = self.path("glove")  # withheld in a checkpoint's recipe: its weights hold them
        if glove is not None:
            vectors, found, self.glove_coverage = load_glove(glove, vocabulary, s.embed_dim)
            model.text.load_vectors(vectors, found)
            log.info("can: GloVe %s: %s", glove, self.glove_coverage)
        return model

    # -- batches -------------------------------------------------------------------------------
    def make_batch(self, items: list[CanItem]) -> Batch:
        """``token_ids`` (B, L_max) padded with ``<pad>``, ``frames`` (W, F_max, 40): the
        batch's W words, each its MFCC frames zero-padded, ``frame_lengths`` (W,),
        ``lengths`` (B,) words per utterance, ``labels`` (B,)."""
        vocabulary = self._require_vocabulary()
        tokens, word_frames = [], []
        for index, item in enumerate(items):
            if len(item.words) == 0 or len(item.words) != item.frame_counts.shape[0]:
                raise ValueError(f"can: item {index}: text and audio step counts disagree "
                                 f"({len(item.words)} words, {item.frame_counts.shape[0]} "
                                 f"audio segments)")
            tokens.append(vocabulary.encode(item.words))
            word_frames.extend(item.frames.split(item.frame_counts.tolist()))
        token_ids, lengths = pad_sequences(tokens, padding_value=PAD_ID)
        frames, frame_lengths = pad_sequences(word_frames)
        self._tokens_seen += sum(t.numel() for t in tokens)
        self._tokens_unknown += int(sum((t == UNK_ID).sum() for t in tokens))
        return {
            "token_ids": token_ids,
            "frames": frames,
            "frame_lengths": frame_lengths,
            "lengths": lengths,
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
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return can_loss(logits, logits_text, logits_audio, batch["labels"], self.settings.alpha,
                        weight=weight)

    def predict(self, model: nn.Module, batch: Batch) -> Predictions:
        return Predictions(fuse_predictions(*model(*self._inputs(batch)), self.settings.alpha))

    def embed(self, model: nn.Module, batch: Batch) -> Embeddings:
        """The four cross-attention contexts, concatenated (B, 8 * hidden)."""
        return Embeddings(model.embed(*self._inputs(batch)))

    def export_module(self, model: nn.Module) -> nn.Module:
        return CANInference(model)

    def export_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return self._inputs(batch)
