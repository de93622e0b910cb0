"""Fixed windows (GLRF) and equal pieces (MMTL): counts and starts against an independent
loop, packed layout, padding, list vs padded input, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from fastser.audio import equal_pieces, fixed_windows, num_windows, piece_bounds, window_starts

W, H = 32000, 3200  # 2 s windows, 0.2 s hop at 16 kHz


def loop_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """The rule written as a loop: starts 0, hop, ... while start + window <= N; one window
    when N < window."""
    starts, start = [], 0
    while start + window <= num_samples:
        starts.append(start)
        start += hop
    return starts or [0]


@pytest.mark.parametrize("num_samples", [1, W - 1, W, W + 1, W + H - 1, W + H, W + H + 1,
                                         5 * W + 7, 160000])
@pytest.mark.parametrize("hop", [H, 2 * H, W])
def test_window_starts_match_the_loop(num_samples, hop):
    expected = loop_starts(num_samples, W, hop)
    assert window_starts(num_samples, W, hop).tolist() == expected
    assert num_windows(num_samples, W, hop) == len(expected)
    assert num_windows(torch.tensor([num_samples]), W, hop).tolist() == [len(expected)]


def utterances(lengths: list[int]) -> list[torch.Tensor]:
    return [torch.randn(n, generator=torch.Generator().manual_seed(n)) for n in lengths]


@pytest.mark.parametrize("hop_seconds", [0.2, 0.4])
def test_fixed_windows_packed_layout(hop_seconds):
    hop = round(hop_seconds * 16000)
    lengths = [48000, 16000, 32000, 40000 + hop - 1, 32001]
    batch = utterances(lengths)
    out = fixed_windows(batch, window=2.0, hop=hop_seconds)
    expected_counts = [len(loop_starts(n, W, hop)) for n in lengths]
    assert out.counts.dtype == torch.long and out.counts.tolist() == expected_counts
    assert out.segments.shape == (sum(expected_counts), W)
    row = 0
    for waveform, n in zip(batch, lengths):
        for start in loop_starts(n, W, hop):
            piece = waveform[start:start + W]
            assert out.starts[row] == start and out.lengths[row] == piece.shape[0]
            assert torch.equal(out.segments[row, :piece.shape[0]], piece)
            assert bool((out.segments[row, piece.shape[0]:] == 0).all())
            row += 1


def test_short_utterance_gives_one_zero_padded_window():
    batch = utterances([5000])
    out = fixed_windows(batch)
    assert out.counts.tolist() == [1] and out.segments.shape == (1, W)
    assert torch.equal(out.segments[0, :5000], batch[0])
    assert bool((out.segments[0, 5000:] == 0).all()) and out.lengths.tolist() == [5000]


def test_padded_batch_equals_list():
    lengths = [40000, 7000, 35000]
    batch = utterances(lengths)
    padded = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
    padded[1, 7000:] = 3.0  # garbage padding must not leak into segments
    from_list = fixed_windows(batch, hop=0.4)
    from_padded = fixed_windows(padded, torch.tensor(lengths), hop=0.4)
    for a, b in zip(from_list, from_padded):
        assert torch.equal(a, b)
    whole = fixed_windows(padded[:1, :40000], hop=0.4)
    assert torch.equal(whole.segments, from_list.segments[:from_list.counts[0]])


@pytest.mark.parametrize("num_samples", [1, 47999, 48000, 48001, 96000, 96001, 200000])
def test_equal_pieces(num_samples):
    batch = utterances([num_samples, 20000])
    out = equal_pieces(batch, max_duration=3.0)
    pieces = math.ceil(num_samples / 48000)
    assert out.counts.tolist() == [pieces, 1]
    assert out.segments.shape == (pieces + 1, 48000)
    mine = out.lengths[:pieces]
    assert int(mine.max() - mine.min()) <= 1 and int(mine.max()) <= 48000
    assert int(mine.sum()) == num_samples
    bounds = piece_bounds(num_samples, 48000)
    assert bounds.tolist() == [i * num_samples // pieces for i in range(pieces + 1)]
    assert torch.equal(out.starts[:pieces], bounds[:-1])
    rebuilt = torch.cat([s[:n] for s, n in zip(out.segments[:pieces], mine.tolist())])
    assert torch.equal(rebuilt, batch[0])
    for segment, n in zip(out.segments, out.lengths.tolist()):
        assert bool((segment[n:] == 0).all())


@pytest.mark.parametrize("call,pattern", [
    (lambda: fixed_windows([torch.zeros(100), torch.zeros(0)]), "utterance 1 is empty"),
    (lambda: fixed_windows([]), "empty batch"),
    (lambda: fixed_windows(torch.zeros(2, 100), torch.tensor([100, 0])), "utterance 1 is empty"),
    (lambda: fixed_windows(torch.zeros(2, 100), torch.tensor([101, 5])), "exceeds the padded"),
    (lambda: fixed_windows(torch.zeros(2, 100), torch.tensor([1, 5], dtype=torch.int32)),
     "int64"),
    (lambda: fixed_windows(torch.zeros(2, 3, 100)), r"must be \(B, N\)"),
    (lambda: fixed_windows([torch.zeros(2, 100)]), "utterance 0: expected a 1-D tensor"),
    (lambda: fixed_windows([torch.zeros(100, dtype=torch.long)]), "must be float"),
    (lambda: fixed_windows([torch.zeros(100)], torch.tensor([100])), "only for a padded"),
    (lambda: fixed_windows([torch.zeros(100)], window=0.0), "window must be positive"),
    (lambda: fixed_windows([torch.zeros(100)], hop=-0.1), "hop must be positive"),
    (lambda: fixed_windows([torch.zeros(100)], window=0.2, hop=0.4), "must not exceed"),
    (lambda: equal_pieces([torch.zeros(100)], max_duration=0.0), "max_duration must be"),
    (lambda: equal_pieces([torch.zeros(0)]), "utterance 0 is empty"),
    (lambda: window_starts(0, W, H), "empty audio"),
    (lambda: piece_bounds(0, 48000), "empty audio"),
])
def test_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
