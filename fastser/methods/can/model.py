"""CAN: cross attention over word-aligned audio and text (Lee et al., "Multimodal Speech
Emotion Recognition using Cross Attention with Aligned Audio and Text", Interspeech 2020).

An utterance of L words is given as its token ids and, for every word, the MFCC frames of its
audio segment (fastser.audio.alignment cuts the audio at the word boundaries), so text and
audio have the same L steps:

- text encoder (:class:`~fastser.methods.can.text.TextEncoder`): embeddings -> BLSTM
  (2 x 128) -> h_text (B, L, 256);
- audio encoder (:class:`AudioEncoder`): one weight-shared BLSTM over each word's frames with
  average pooling over the word's frames -> a vector per word, then an utterance BLSTM over
  the word vectors -> h_audio (B, L, 256). The words of all utterances of a batch go through
  the word BLSTM in one batched call (pack_padded_sequence, or on the CPU the padded batch
  with the backward direction reversed within each word:
  :class:`~fastser.methods.can.layers.PackedBLSTM`);
- cross attention (fastser.nn.CrossAttention, 4 heads, the fused op): per head, a learned
  global query attends over each modality; each modality's weights also pool the other
  modality through a stop-gradient: c_tt, c_ta (text weights), c_aa, c_at (audio weights);
- three classifiers (one linear layer each):
  ŷ   from [c_tt; c_ta; c_aa; c_at] (all four contexts, Eq. 10),
  ŷ_T from c_tt and ŷ_A from c_aa (``side_heads="own_context"``, Eq. 11-12), or
  ŷ_T from [c_tt; c_at] and ŷ_A from [c_aa; c_ta] (``"both_contexts"``, fastser 0.1: each
  side's two sums of its own modality's vectors).
  Through the stop-gradient, ŷ_T's loss reaches only the text encoder and text query, ŷ_A's
  only the audio encoder and audio query;
- loss: L = CE(ŷ) + α (CE(ŷ_T) + CE(ŷ_A)), α = 0.1; final prediction ŷ · ŷ_T^α · ŷ_A^α
  (class probabilities, renormalised).

Table 4's ablations: ``stop_gradient=False`` (no sg in Eq. 7 and 9: the cross attention runs
the PyTorch formulation, which the fused op does not cover), α = 0 (no L_align), and
``cross_attention=False`` (ŷ from [c_tt; c_aa] alone, no side heads, so no L_align and no
crossed contexts).

Batch layout (ragged, :class:`CAN` and :class:`CANInference` inputs):
  token_ids     int64 (B, L_max), padded with 0 (the ``<pad>`` id)
  frames        float (W, F_max, n_mfcc): the W = Σ lengths words of the batch, utterance
                after utterance, each word's MFCC frames padded to F_max
  frame_lengths int64 (W,) frames of each word, in [1, F_max]
  lengths       int64 (B,) words of each utterance, in [1, L_max]
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fastser.methods.can.layers import PackedBLSTM
from fastser.methods.can.text import TextEncoder
from fastser.nn.cross_attention import IMPLEMENTATIONS, CrossAttention
from fastser.nn.guards import assert_range, assert_sum, tracing

N_MFCC = 40
#: What the side heads ŷ_T, ŷ_A read (module docstring).
SIDE_HEADS = ("both_contexts", "own_context")


def check_batch(token_ids: Tensor, frames: Tensor, frame_lengths: Tensor, lengths: Tensor,
                n_mfcc: int, vocab_size: int) -> None:
    """ValueError naming the argument for a batch that breaks the layout in the module
    docstring (in particular text and audio step counts that disagree)."""
    if token_ids.dim() != 2 or token_ids.dtype != torch.long:
        raise ValueError(f"CAN: token_ids must be int64 (B, L), got {token_ids.dtype} "
                         f"{list(token_ids.shape)}")
    batch, steps = token_ids.shape[0], token_ids.shape[1]
    if lengths.dim() != 1 or lengths.dtype != torch.long or lengths.shape[0] != batch:
        raise ValueError(f"CAN: lengths must be int64 ({batch},), got {lengths.dtype} "
                         f"{list(lengths.shape)}")
    if frames.dim() != 3 or frames.shape[2] != n_mfcc or not frames.is_floating_point():
        raise ValueError(f"CAN: frames must be float (W, F, {n_mfcc}), got {frames.dtype} "
                         f"{list(frames.shape)}")
    words = frames.shape[0]
    if (frame_lengths.dim() != 1 or frame_lengths.dtype != torch.long
            or frame_lengths.shape[0] != words):
        raise ValueError(f"CAN: frame_lengths must be int64 ({words},), got "
                         f"{frame_lengths.dtype} {list(frame_lengths.shape)}")
    for tensor, name in [(frames, "frames"), (frame_lengths, "frame_lengths"),
                         (lengths, "lengths")]:
        if tensor.device != token_ids.device:
            raise ValueError(f"CAN: {name} is on {tensor.device} but token_ids on "
                             f"{token_ids.device}")
    if batch == 0:
        raise ValueError("CAN: empty batch")
    if tracing():  # torch.compile / torch.export: the value checks below as graph asserts
        assert_range(lengths, 1, steps, "CAN: lengths must be in [1, L]")
        assert_sum(lengths, words, "CAN: lengths must sum to the word segments of frames")
        assert_range(frame_lengths, 1, frames.shape[1], "CAN: frame_lengths must be in [1, F]")
        assert_range(token_ids, 0, vocab_size - 1, "CAN: token ids must be in [0, vocab_size)")
        return
    if int(lengths.min()) < 1 or int(lengths.max()) > steps:
        raise ValueError(f"CAN: lengths must be in [1, {steps}] (words per utterance; "
                         f"token_ids has {steps} steps), got values in [{int(lengths.min())}, "
                         f"{int(lengths.max())}]")
    if int(lengths.sum()) != words:
        raise ValueError(f"CAN: text and audio step counts disagree: lengths sum to "
                         f"{int(lengths.sum())} words but frames holds {words} word segments")
    if int(frame_lengths.min()) < 1 or int(frame_lengths.max()) > frames.shape[1]:
        raise ValueError(f"CAN: frame_lengths must be in [1, {frames.shape[1]}] (every word "
                         f"needs at least one frame)")
    if int(token_ids.min()) < 0 or int(token_ids.max()) >= vocab_size:
        raise ValueError(f"CAN: token ids must be in [0, {vocab_size}) (the vocabulary size), "
                         f"got values in [{int(token_ids.min())}, {int(token_ids.max())}]")


def scatter_words(word_vectors: Tensor, lengths: Tensor, steps: int) -> Tensor:
    """(W, D) word vectors, utterance after utterance, and int64 (B,) lengths summing to W ->
    (B, steps, D), 0 past each length."""
    batch = lengths.shape[0]
    utterance = torch.repeat_interleave(torch.arange(batch, device=lengths.device), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    position = torch.arange(word_vectors.shape[0], device=lengths.device) - first[utterance]
    out = word_vectors.new_zeros(batch, steps, word_vectors.shape[1])
    return out.index_put((utterance, position), word_vectors)


class AudioEncoder(nn.Module):
    """Word-level BLSTM (shared by all words) + average pooling, then an utterance BLSTM.

    forward(frames (W, F, n_mfcc), frame_lengths (W,), lengths (B,), steps) ->
    (B, steps, 2 * hidden), 0 past each length. Frames are standardised with the buffers
    ``feature_mean``/``feature_std`` (n_mfcc,) (training-set statistics, set by the recipe).
    """

    def __init__(self, n_mfcc: int = N_MFCC, word_hidden: int = 128, hidden: int = 128,
                 dropout: float = 0.3, blstm_method: str = "auto") -> None:
        super().__init__()
        self.n_mfcc = n_mfcc
        self.register_buffer("feature_mean", torch.zeros(n_mfcc))
        self.register_buffer("feature_std", torch.ones(n_mfcc))
        self.word_blstm = PackedBLSTM(n_mfcc, word_hidden, dropout, blstm_method)
        self.utterance_blstm = PackedBLSTM(self.word_blstm.output_size, hidden, dropout,
                                           blstm_method)

    @property
    def output_size(self) -> int:
        return self.utterance_blstm.output_size

    def word_vectors(self, frames: Tensor, frame_lengths: Tensor) -> Tensor:
        """(W, F, n_mfcc), (W,) -> (W, 2 * word_hidden): every word through the word BLSTM
        in one packed call, averaged over the word's frames."""
        normalised = (frames - self.feature_mean) / self.feature_std
        hidden = self.word_blstm(normalised, frame_lengths)  # (W, F, 2H), 0 past lengths
        return hidden.sum(dim=1) / frame_lengths.unsqueeze(1).to(hidden.dtype)

    def forward(self, frames: Tensor, frame_lengths: Tensor, lengths: Tensor,
                steps: int) -> Tensor:
        words = scatter_words(self.word_vectors(frames, frame_lengths), lengths, steps)
        return self.utterance_blstm(words, lengths)


def word_vectors_loop(encoder: AudioEncoder, frames: Tensor, frame_lengths: Tensor) -> Tensor:
    """:meth:`AudioEncoder.word_vectors` as the Python loop over words a user would write
    (each word alone through the word LSTM, then its mean): test oracle and benchmark
    baseline."""
    blstm = encoder.word_blstm
    vectors = []
    for word in range(frames.shape[0]):
        one = frames[word:word + 1, :int(frame_lengths[word])]
        hidden, _ = blstm.lstm((one - encoder.feature_mean) / encoder.feature_std)
        vectors.append(blstm.dropout(hidden).mean(dim=1))
    return torch.cat(vectors)


def fuse_predictions(logits: Tensor, logits_text: Optional[Tensor],
                     logits_audio: Optional[Tensor], alpha: float) -> Tensor:
    """ŷ · ŷ_T^α · ŷ_A^α renormalised, from the three heads' logits (B, C) -> (B, C)
    probabilities (computed in log space); softmax(ŷ) without side heads (None)."""
    log_fused = F.log_softmax(logits.float(), dim=1)
    if logits_text is not None and logits_audio is not None:
        log_fused = (log_fused + alpha * F.log_softmax(logits_text.float(), dim=1)
                     + alpha * F.log_softmax(logits_audio.float(), dim=1))
    return torch.softmax(log_fused, dim=1)


def can_loss(logits: Tensor, logits_text: Optional[Tensor], logits_audio: Optional[Tensor],
             labels: Tensor, alpha: float, weight: Tensor | None = None) -> Tensor:
    """CE(ŷ) + α (CE(ŷ_T) + CE(ŷ_A)), each a mean over the batch (class-weighted by
    ``weight`` (C,) when given); CE(ŷ) without side heads (None)."""
    if weight is not None:
        logits = logits.float()
        logits_text = None if logits_text is None else logits_text.float()
        logits_audio = None if logits_audio is None else logits_audio.float()
    loss = F.cross_entropy(logits, labels, weight=weight)
    if logits_text is None or logits_audio is None:
        return loss
    return loss + alpha * (F.cross_entropy(logits_text, labels, weight=weight)
                           + F.cross_entropy(logits_audio, labels, weight=weight))


class CAN(nn.Module):
    """The Cross Attention Network (module docstring).

    forward(token_ids, frames, frame_lengths, lengths) -> (logits ŷ, logits_text ŷ_T,
    logits_audio ŷ_A), each (B, num_classes) (the side heads None with
    ``cross_attention=False``). ``side_heads``, ``stop_gradient`` and ``cross_attention``: see
    the module docstring. ``implementation="reference"`` runs the cross attention on the
    reference PyTorch op instead of the fused one ("fused", the default).
    ``blstm_method`` picks how the BLSTMs run a ragged batch in one call
    (:class:`~fastser.methods.can.layers.PackedBLSTM`: "auto", "packed", "reversed"; same
    results). Scriptable with TorchScript.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, embed_dim: int = 300,
                 hidden: int = 128, word_hidden: int = 128, heads: int = 4,
                 dropout: float = 0.3, alpha: float = 0.1, n_mfcc: int = N_MFCC,
                 implementation: str = "fused", blstm_method: str = "auto",
                 side_heads: str = "both_contexts", stop_gradient: bool = True,
                 cross_attention: bool = True) -> None:
        super().__init__()
        if side_heads not in SIDE_HEADS:
            raise ValueError(f"CAN: side_heads must be one of {SIDE_HEADS}, got {side_heads!r}")
        if num_classes < 2:
            raise ValueError(f"CAN: num_classes must be >= 2, got {num_classes}")
        if (2 * hidden) % heads != 0:
            raise ValueError(f"CAN: heads ({heads}) must divide the encoders' output size "
                             f"2 * hidden = {2 * hidden}")
        if not alpha >= 0:
            raise ValueError(f"CAN: alpha must be >= 0, got {alpha}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"CAN: implementation must be one of {IMPLEMENTATIONS}, got "
                             f"{implementation!r}")
        self.vocab_size, self.n_mfcc, self.alpha = vocab_size, n_mfcc, float(alpha)
        self.text = TextEncoder(vocab_size, embed_dim, hidden, dropout, blstm_method)
        self.audio = AudioEncoder(n_mfcc, word_hidden, hidden, dropout, blstm_method)
        size = 2 * hidden
        self.cross = CrossAttention(heads, size // heads, implementation=implementation,
                                    stop_gradient=stop_gradient)
        self.crossed, self.own_context = bool(cross_attention), side_heads == "own_context"
        self.classifier = nn.Linear((4 if self.crossed else 2) * size, num_classes)
        side = size if self.own_context else 2 * size
        # without cross attention there are no side heads (Identity: nothing to train)
        self.text_classifier = nn.Linear(side, num_classes) if self.crossed else nn.Identity()
        self.audio_classifier = nn.Linear(side, num_classes) if self.crossed else nn.Identity()

    def contexts(self, token_ids: Tensor, frames: Tensor, frame_lengths: Tensor,
                 lengths: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four cross-attention contexts c_tt, c_ta, c_aa, c_at, each (B, 2 * hidden)."""
        check_batch(token_ids, frames, frame_lengths, lengths, self.n_mfcc, self.vocab_size)
        steps = token_ids.shape[1]
        h_text = self.text(token_ids, lengths)
        h_audio = self.audio(frames, frame_lengths, lengths, steps)
        dtype = self.cross.q_text.dtype  # encoders may run in a lower precision under autocast
        return self.cross(h_text.to(dtype), h_audio.to(dtype), lengths)

    def embed(self, token_ids: Tensor, frames: Tensor, frame_lengths: Tensor,
              lengths: Tensor) -> Tensor:
        """The representation the classifier ŷ reads: [c_tt; c_ta; c_aa; c_at] (B, 8 * hidden),
        or [c_tt; c_aa] (B, 4 * hidden) without cross attention."""
        c_tt, c_ta, c_aa, c_at = self.contexts(token_ids, frames, frame_lengths, lengths)
        if not self.crossed:
            return torch.cat([c_tt, c_aa], dim=1)
        return torch.cat([c_tt, c_ta, c_aa, c_at], dim=1)

    def forward(self, token_ids: Tensor, frames: Tensor, frame_lengths: Tensor,
                lengths: Tensor) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        c_tt, c_ta, c_aa, c_at = self.contexts(token_ids, frames, frame_lengths, lengths)
        if not self.crossed:
            return self.classifier(torch.cat([c_tt, c_aa], dim=1)), None, None
        logits = self.classifier(torch.cat([c_tt, c_ta, c_aa, c_at], dim=1))
        if self.own_context:
            return logits, self.text_classifier(c_tt), self.audio_classifier(c_aa)
        return (logits, self.text_classifier(torch.cat([c_tt, c_at], dim=1)),
                self.audio_classifier(torch.cat([c_aa, c_ta], dim=1)))

    def predict_proba(self, token_ids: Tensor, frames: Tensor, frame_lengths: Tensor,
                      lengths: Tensor) -> Tensor:
        """The final prediction ŷ · ŷ_T^α · ŷ_A^α (renormalised), (B, num_classes)."""
        logits, logits_text, logits_audio = self.forward(token_ids, frames, frame_lengths,
                                                         lengths)
        return fuse_predictions(logits, logits_text, logits_audio, self.alpha)


class CANInference(nn.Module):
    """The export module: (token_ids, frames, frame_lengths, lengths) -> final class
    probabilities (B, num_classes). Scriptable; a saved script runs where fastser's shared
    library is loaded."""

    def __init__(self, model: CAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, token_ids: Tensor, frames: Tensor, frame_lengths: Tensor,
                lengths: Tensor) -> Tensor:
        return self.model.predict_proba(token_ids, frames, frame_lengths, lengths)
