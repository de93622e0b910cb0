"""Aligned word segmentation (CAN): marker dropping, silence splitting, 10% overlap, sample and
frame ranges, the equal-length ablation, and every bad input."""

from __future__ import annotations

import pytest
import torch

from fastser.audio import (MFCC, WordTiming, aligned_segments, equal_segments,
                           word_frame_ranges)

RATE = 16000


def words(*items: tuple[str, float, float]) -> list[WordTiming]:
    return [WordTiming(*item) for item in items]


def widened(bounds_s: list[float], overlap: float, num_samples: int) -> tuple[list, list]:
    """The documented rule computed by hand, in plain Python: tiled spans in seconds ->
    widened, clipped sample ranges."""
    spans = list(zip(bounds_s[:-1], bounds_s[1:]))
    durations = [b - a for a, b in spans]
    starts, ends = [], []
    for i, (a, b) in enumerate(spans):
        if i > 0:
            a -= overlap / 2 * (durations[i - 1] + durations[i])
        if i < len(spans) - 1:
            b += overlap / 2 * (durations[i] + durations[i + 1])
        start = min(max(round(a * RATE), 0), num_samples - 1)
        starts.append(start)
        ends.append(max(min(round(b * RATE), num_samples), start + 1))
    return starts, ends


def test_markers_dropped_and_silence_split_at_midpoint():
    timings = words(("<s>", 0.0, 0.5), ("hello", 0.5, 1.0), ("<sil>", 1.0, 1.4),
                    ("world", 1.4, 2.0), ("</s>", 2.0, 2.5))
    out = aligned_segments(timings, 40000, overlap=0.0)
    assert out.words == ["hello", "world"]
    # leading silence to "hello", the pause split at 1.2 s, trailing silence to "world"
    assert out.starts.tolist() == [0, 19200] and out.ends.tolist() == [19200, 40000]


def test_ten_percent_overlap():
    timings = words(("<s>", 0.0, 0.5), ("hello", 0.5, 1.0), ("<SIL>", 1.0, 1.4),
                    ("world", 1.4, 2.0), ("Sil", 2.0, 2.1), ("again", 2.1, 2.4))
    out = aligned_segments(timings, 40000)
    # tiled: hello [0, 1.2), world [1.2, 2.05), again [2.05, 2.5)
    expected = widened([0.0, 1.2, 2.05, 2.5], 0.1, 40000)
    assert out.words == ["hello", "world", "again"]
    assert (out.starts.tolist(), out.ends.tolist()) == expected
    # hello/world share 10% of their combined 2.05 s
    shared = (out.ends[0] - out.starts[1]).item() / RATE
    assert abs(shared - 0.1 * 2.05) <= 2 / RATE
    assert out.starts.dtype == out.ends.dtype == torch.long


def test_unlabelled_gaps_and_touching_words():
    timings = words(("a", 0.2, 0.4), ("b", 0.4, 0.9), ("c", 1.1, 1.3))
    out = aligned_segments(timings, 24000, overlap=0.2)
    assert (out.starts.tolist(), out.ends.tolist()) == widened([0.0, 0.4, 1.0, 1.5], 0.2, 24000)


def test_single_word_and_tolerance():
    out = aligned_segments(words(("<s>", 0.0, 0.1), ("only", 0.1, 1.01)), 16000)
    assert out.words == ["only"]
    assert out.starts.tolist() == [0] and out.ends.tolist() == [16000]


def test_custom_markers():
    timings = words(("um", 0.0, 0.3), ("yes", 0.3, 0.8))
    out = aligned_segments(timings, 16000, markers=frozenset({"UM"}), overlap=0.0)
    assert out.words == ["yes"] and out.starts.tolist() == [0] and out.ends.tolist() == [16000]


def test_zero_length_words_get_a_sample():
    timings = words(("a", 0.5, 0.5), ("b", 0.5, 0.5), ("c", 0.5, 1.0))
    out = aligned_segments(timings, 16000, overlap=0.0)
    assert bool((out.ends > out.starts).all())


def test_equal_segments_ablation():
    starts, ends = equal_segments(4, 16000, overlap=0.1)
    expected = widened([0.0, 0.25, 0.5, 0.75, 1.0], 0.1, 16000)
    assert (starts.tolist(), ends.tolist()) == expected
    plain_starts, plain_ends = equal_segments(3, 16001, overlap=0.0)
    assert plain_starts.tolist() == [0, 5334, 10667]  # 16001 / 3 = 5333.67, rounded
    assert plain_ends.tolist() == [5334, 10667, 16001]


def brute_force_frames(start: int, end: int, num_samples: int, n_fft: int, hop: int):
    total = (num_samples - n_fft) // hop + 1
    inside = [t for t in range(total) if start <= t * hop + n_fft / 2 < end]
    if inside:
        return inside[0], inside[-1] + 1
    middle = (start + end) / 2
    nearest = min(range(total), key=lambda t: (abs(t * hop + n_fft / 2 - middle), t))
    return nearest, nearest + 1


@pytest.mark.parametrize("n_fft,hop", [(400, 160), (512, 160), (200, 80)])
def test_word_frame_ranges_brute_force(n_fft, hop):
    g = torch.Generator().manual_seed(n_fft)
    num_samples = 20000
    starts = torch.randint(0, num_samples - 1, (200,), generator=g)
    ends = torch.minimum(starts + torch.randint(1, 3000, (200,), generator=g),
                         torch.tensor(num_samples))
    starts = torch.cat([starts, torch.tensor([0, 0, 19990, 5000])])
    ends = torch.cat([ends, torch.tensor([num_samples, 10, num_samples, 5001])])
    first, last = word_frame_ranges(starts, ends, num_samples, n_fft=n_fft, hop_length=hop)
    for s, e, f, l in zip(starts.tolist(), ends.tolist(), first.tolist(), last.tolist()):
        assert (f, l) == brute_force_frames(s, e, num_samples, n_fft, hop)


def test_frame_ranges_index_mfcc_frames():
    out = aligned_segments(words(("hi", 0.1, 0.4), ("there", 0.5, 1.2)), 24000)
    first, last = word_frame_ranges(out.starts, out.ends, 24000)
    total = MFCC().num_frames(24000)
    assert first[0] == 0 and last[-1] == total and bool((last > first).all())
    assert last[0] > first[1]  # the overlap carries over to frames


@pytest.mark.parametrize("timings,num_samples,error,pattern", [
    ([("<s>", 0.0, 0.2), ("<SIL>", 0.2, 0.5), ("</s>", 0.5, 1.0)], 16000, ValueError,
     "empty transcript: no words left"),
    ([], 16000, ValueError, "empty transcript"),
    ([("late", 1.0, 1.2)], 16000, ValueError, "'late' starts at 1.0 s, at or after the end"),
    ([("long", 0.5, 1.05)], 16000, ValueError, "'long' ends at 1.05 s, more than 0.02 s past"),
    ([("b", 0.5, 0.7), ("a", 0.1, 0.3)], 16000, ValueError, "not sorted: 'a'"),
    ([("a", 0.1, 0.5), ("b", 0.4, 0.7)], 16000, ValueError, "overlap: 'a' ends at 0.5 s but 'b'"),
])
def test_bad_alignments(timings, num_samples, error, pattern):
    with pytest.raises(error, match=pattern):
        aligned_segments(words(*timings), num_samples)


def test_bad_arguments():
    with pytest.raises(ValueError, match="needs 0 <= start <= end"):
        WordTiming("backwards", 1.0, 0.5)
    with pytest.raises(TypeError, match=r"words\[0\]: expected a WordTiming"):
        aligned_segments([("a", 0.0, 0.5)], 16000)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        aligned_segments(words(("a", 0.0, 0.5)), 16000, overlap=1.0)
    with pytest.raises(ValueError, match="num_samples >= 1"):
        aligned_segments(words(("a", 0.0, 0.5)), 0)
    with pytest.raises(ValueError, match="empty transcript"):
        equal_segments(0, 16000)
    with pytest.raises(ValueError, match="cannot cut 3 samples into 4"):
        equal_segments(4, 3)
    with pytest.raises(ValueError, match="shorter than one frame"):
        word_frame_ranges(torch.tensor([0]), torch.tensor([100]), 399)
