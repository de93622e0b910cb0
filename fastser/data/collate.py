"""Collation of ragged batches, usable as ``DataLoader(collate_fn=...)``.

A dataset item is either a tensor or a tuple/list whose first element is the tensor; the
other elements (labels, V/A/D targets, ids, ...) are collated with
``torch.utils.data.default_collate`` and returned after the ragged part.

- :func:`collate_padded`: items (T_i, *F) -> ``(padded (B, T_max, *F), lengths (B,) int64,
  *rest)``; padding is ``padding_value`` (0) and takes no part in any fastser op.
- :func:`collate_segments`: items (N_i, *S), the N_i segments of utterance i (e.g. windows
  (N_i, T_win, F)) -> ``(packed (sum N_i, *S), counts (B,) int64, *rest)``, segments of the
  utterances back to back, the layout of the head-k-pooling loss.

Recipes build their batches with the plain functions :func:`pad_sequences` and
:func:`pack_sequences` (the same checks, without the tuple convention).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import default_collate


def _split(batch: Sequence, fn: str) -> tuple[list[torch.Tensor], list[tuple]]:
    """(ragged tensors, other fields per item), with the checks shared by both collates."""
    if len(batch) == 0:
        raise ValueError(f"{fn}: empty batch")
    tensors, rest = [], []
    for i, item in enumerate(batch):
        if isinstance(item, (tuple, list)):
            if not item:
                raise ValueError(f"{fn}: item {i} is an empty {type(item).__name__}")
            item, extra = item[0], tuple(item[1:])
        else:
            extra = ()
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"{fn}: item {i} must be a tensor or a tuple starting with one, "
                            f"got {type(item).__name__}")
        if item.dim() < 1:
            raise ValueError(f"{fn}: item {i} is a 0-d tensor; needs a leading length dim")
        if item.shape[0] < 1:
            raise ValueError(f"{fn}: item {i} has length 0; every item needs at least 1 "
                             "frame or segment")
        tensors.append(item)
        rest.append(extra)
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.shape[1:] != first.shape[1:]:
            raise ValueError(f"{fn}: item {i} has trailing shape {tuple(t.shape[1:])}, item 0 "
                             f"has {tuple(first.shape[1:])}")
        if t.dtype != first.dtype or t.device != first.device:
            raise ValueError(f"{fn}: item {i} is {t.dtype} on {t.device}, item 0 is "
                             f"{first.dtype} on {first.device}")
    if len({len(r) for r in rest}) != 1:
        raise ValueError(f"{fn}: items have different numbers of fields")
    return tensors, rest


def _with_rest(head: tuple, rest: list[tuple]):
    if not rest[0]:
        return head
    return head + tuple(default_collate(list(column)) for column in zip(*rest))


def pad_sequences(sequences: Sequence[torch.Tensor],
                  padding_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(T_i, *F) tensors -> padded (B, T_max, *F) and lengths (B,) int64."""
    if not all(isinstance(s, torch.Tensor) for s in sequences):
        raise TypeError("pad_sequences: every sequence must be a tensor")
    tensors, _ = _split(list(sequences), "pad_sequences")
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
    padded = tensors[0].new_full((len(tensors), int(lengths.max()), *tensors[0].shape[1:]),
                                 padding_value)
    for i, t in enumerate(tensors):
        padded[i, :t.shape[0]] = t
    return padded, lengths


def pack_sequences(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N_i, *S) tensors -> packed (sum N_i, *S), back to back, and counts (B,) int64."""
    if not all(isinstance(s, torch.Tensor) for s in sequences):
        raise TypeError("pack_sequences: every sequence must be a tensor")
    tensors, _ = _split(list(sequences), "pack_sequences")
    counts = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
    return torch.cat(tensors, dim=0), counts


def collate_padded(batch: Sequence, padding_value: float = 0.0):
    """``(padded (B, T_max, *F), lengths (B,) int64, *rest)`` (see the module docstring)."""
    tensors, rest = _split(batch, "collate_padded")
    return _with_rest(pad_sequences(tensors, padding_value), rest)


def collate_segments(batch: Sequence):
    """``(packed (sum N_i, *S), counts (B,) int64, *rest)`` (see the module docstring)."""
    tensors, rest = _split(batch, "collate_segments")
    return _with_rest(pack_sequences(tensors), rest)
