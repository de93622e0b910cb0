"""Benchmark cases of the CAN training step (forward, forward+backward of L_total): the fused
cross attention op against the reference op, in the same model with the same weights.

Batches look like real ones: B utterances of 4..30 words (IEMOCAP and the synthetic corpus
average about 13), each word 5..120 MFCC frames (about 36 on average), paper sizes (300-d
embeddings, BLSTMs of 2 x 128, 4 heads) and a 3,000-word vocabulary.  A third
implementation runs the fused op with the other BLSTM method (packed on the CPU, reversed
on CUDA; fastser.methods.can.layers.PackedBLSTM)."""

from __future__ import annotations

import torch

from fastser.bench.cases import BenchCase
from fastser.methods.can.model import CAN, can_loss

SUITE = "can"
VOCAB, CLASSES = 3000, 4

# (utterances, most words, most frames per word, embed_dim, hidden)
SIZES = [(64, 30, 120, 300, 128)]
QUICK_SIZES = [(4, 6, 12, 16, 8)]


def _make_inputs(batch: int, max_words: int, max_frames: int, device: torch.device,
                 dtype: torch.dtype):
    def make():
        gen = torch.Generator().manual_seed(0)
        lengths = torch.randint(min(4, max_words), max_words + 1, (batch,), generator=gen)
        token_ids = torch.zeros(batch, max_words, dtype=torch.long)
        for b, n in enumerate(lengths.tolist()):
            token_ids[b, :n] = torch.randint(2, VOCAB, (n,), generator=gen)
        words = int(lengths.sum())
        # word durations: exponential around a third of the longest, at least 5 frames
        scale = max_frames / 3.3
        frame_lengths = (torch.empty(words).exponential_(1.0 / scale, generator=gen).long() + 5)
        frame_lengths = frame_lengths.clamp(max=max_frames)
        frames = torch.randn(words, int(frame_lengths.max()), 40, generator=gen)
        labels = torch.randint(0, CLASSES, (batch,), generator=gen)
        return (token_ids.to(device), frames.to(device=device, dtype=dtype),
                frame_lengths.to(device), lengths.to(device), labels.to(device))

    return make


def _training_step(model: CAN):
    def step(token_ids, frames, frame_lengths, lengths, labels):
        logits, logits_text, logits_audio = model(token_ids, frames, frame_lengths, lengths)
        return can_loss(logits, logits_text, logits_audio, labels, model.alpha)

    return step


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    other_method = "reversed" if device.type == "cuda" else "packed"
    result = []
    for batch, max_words, max_frames, embed, hidden in (QUICK_SIZES if quick else SIZES):
        models = {}
        for name, implementation, method in (
                ("fused", "fused", "auto"), ("reference", "reference", "auto"),
                (f"fused+{other_method}_blstm", "fused", other_method)):
            torch.manual_seed(0)  # the same weights in every implementation
            models[name] = CAN(VOCAB, CLASSES, embed_dim=embed, hidden=hidden,
                               word_hidden=hidden, implementation=implementation,
                               blstm_method=method).to(device=device, dtype=dtype).train()
        result.append(BenchCase(
            suite=SUITE,
            size=f"B={batch} words<={max_words} frames/word<={max_frames} E={2 * hidden}",
            make_inputs=_make_inputs(batch, max_words, max_frames, device, dtype),
            impls={name: _training_step(model) for name, model in models.items()},
            device=device,
            note="CAN loss CE + 0.1 (CE_T + CE_A); reference = reference cross attention op; "
                 "fwd+bwd includes the BLSTMs' backward (the bulk of the step)",
            meta={"batch": batch, "max_words": max_words, "max_frames": max_frames,
                  "embed_dim": embed, "hidden": hidden},
        ))
    return result
