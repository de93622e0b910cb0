"""Ragged-batch collation: padded tensors + lengths, packed segments + counts."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from fastser.data import collate_padded, collate_segments, pack_sequences, pad_sequences


def test_pad_sequences_any_trailing_dims():
    seqs = [torch.randn(3, 2, 4), torch.randn(5, 2, 4), torch.randn(1, 2, 4)]
    padded, lengths = pad_sequences(seqs, padding_value=-1.0)
    assert padded.shape == (3, 5, 2, 4)
    assert lengths.dtype == torch.int64 and lengths.tolist() == [3, 5, 1]
    for i, s in enumerate(seqs):
        assert torch.equal(padded[i, :len(s)], s)
        assert (padded[i, len(s):] == -1.0).all()
    one_d, lengths = pad_sequences([torch.arange(2), torch.arange(4)])
    assert one_d.tolist() == [[0, 1, 0, 0], [0, 1, 2, 3]] and one_d.dtype == torch.int64


def test_collate_padded_with_extra_fields():
    batch = [(torch.ones(2, 3), 1, torch.tensor([0.5, 0.1])),
             (torch.full((4, 3), 2.0), 3, torch.tensor([0.2, 0.7]))]
    padded, lengths, labels, targets = collate_padded(batch)
    assert padded.shape == (2, 4, 3)
    assert padded[0, 2:].abs().sum() == 0 and (padded[1] == 2.0).all()
    assert lengths.tolist() == [2, 4]
    assert labels.tolist() == [1, 3]
    assert torch.equal(targets, torch.tensor([[0.5, 0.1], [0.2, 0.7]]))
    padded_only = collate_padded([torch.zeros(1, 3), torch.zeros(2, 3)])
    assert len(padded_only) == 2


def test_collate_segments_packs_back_to_back():
    a, b = torch.randn(3, 5, 2), torch.randn(1, 5, 2)
    packed, counts, labels = collate_segments([(a, 0), (b, 2)])
    assert packed.shape == (4, 5, 2)
    assert torch.equal(packed[:3], a) and torch.equal(packed[3:], b)
    assert counts.dtype == torch.int64 and counts.tolist() == [3, 1]
    assert labels.tolist() == [0, 2]


def test_usable_as_dataloader_collate_fn():
    items = [(torch.randn(n, 4), n % 2) for n in (3, 7, 2, 5, 1)]
    loader = DataLoader(items, batch_size=2, collate_fn=collate_padded)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(2, 7, 4), (2, 5, 4), (1, 1, 4)]
    assert [b[1].tolist() for b in batches] == [[3, 7], [2, 5], [1]]
    segments = DataLoader([(torch.randn(n, 6, 4), 1) for n in (2, 3)], batch_size=2,
                          collate_fn=collate_segments)
    packed, counts, _ = next(iter(segments))
    assert packed.shape == (5, 6, 4) and counts.tolist() == [2, 3]


@pytest.mark.parametrize("batch, error, message", [
    ([], ValueError, "empty batch"),
    ([torch.zeros(0, 3)], ValueError, "item 0 has length 0"),
    ([torch.tensor(1.0)], ValueError, "0-d tensor"),
    ([torch.zeros(2, 3), torch.zeros(2, 4)], ValueError, r"item 1 has trailing shape \(4,\)"),
    ([torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64)], ValueError, "item 1 is"),
    ([[1, 2]], TypeError, "item 0 must be a tensor"),
    ([()], ValueError, "item 0 is an empty tuple"),
    ([(torch.zeros(2), 1), torch.zeros(2)], ValueError, "different numbers of fields"),
])
def test_errors(batch, error, message):
    for collate in (collate_padded, collate_segments):
        with pytest.raises(error, match=message):
            collate(batch)


def test_pad_sequences_rejects_non_tensors():
    with pytest.raises(TypeError, match="every sequence must be a tensor"):
        pad_sequences([(torch.zeros(2), 1)])


def test_pack_sequences_concatenates_and_counts():
    a, b = torch.randn(2, 3, 4), torch.randn(5, 3, 4)
    packed, counts = pack_sequences([a, b])
    torch.testing.assert_close(packed, torch.cat([a, b]))
    assert counts.tolist() == [2, 5] and counts.dtype == torch.int64
    with pytest.raises(ValueError, match="empty batch"):
        pack_sequences([])
    with pytest.raises(ValueError, match="trailing shape"):
        pack_sequences([a, torch.randn(2, 3, 5)])
