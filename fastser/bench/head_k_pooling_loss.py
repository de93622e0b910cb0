"""Benchmark cases of ``head_k_pooling_loss``: the fused op against the vectorised reference
(padding, stable sort, masks) and the per-utterance Python loop, on GLRF-sized batches
(segment counts uniform in [3, 60], 5 emotion classes).  The loss is the scalar "mean", so the
forward+backward run back-propagates from it as a training step does."""

from __future__ import annotations

import torch

from fastser.bench.cases import BenchCase
from fastser.ops import head_k_pooling_loss
from fastser.ops.reference import head_k_pooling_loss_loop, head_k_pooling_loss_reference

SUITE = "head_k_pooling_loss"
CLASSES = 5
MIN_SEGMENTS, MAX_SEGMENTS = 3, 60


def _make_inputs(batch: int, classes: int, device: torch.device, dtype: torch.dtype, seed: int):
    def make():
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(MIN_SEGMENTS, MAX_SEGMENTS + 1, (batch,), generator=gen)
        labels = torch.randint(0, classes, (batch,), generator=gen)
        logits = torch.randn(int(lengths.sum()), classes, generator=gen)
        return (logits.to(device=device, dtype=dtype).requires_grad_(), lengths.to(device),
                labels.to(device))
    return make


def _fused(logits, lengths, labels):
    return head_k_pooling_loss(logits, lengths, labels)


def _reference(logits, lengths, labels):
    return head_k_pooling_loss_reference(logits, lengths, labels)


def _loop(logits, lengths, labels):
    return head_k_pooling_loss_loop(logits, lengths, labels)


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    batches = (8,) if quick else (256, 1024)
    result = []
    for batch in batches:
        result.append(BenchCase(
            suite=SUITE,
            size=f"B={batch} N~U[{MIN_SEGMENTS},{MAX_SEGMENTS}] C={CLASSES}",
            make_inputs=_make_inputs(batch, CLASSES, device, dtype, seed=batch),
            impls={"fused": _fused, "reference": _reference, "loop": _loop},
            device=device,
            note="k=0.7, no neutral class, reduction='mean'",
            meta={"batch": batch, "classes": CLASSES, "segments": [MIN_SEGMENTS, MAX_SEGMENTS]},
        ))
    return result
