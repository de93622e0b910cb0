"""Per-speaker standardisation: each speaker's frames get zero mean and unit variance per
feature, the order is kept, and a speaker's statistics never leak into another's frames."""

import pytest
import torch

from fastser.train.kit.standardise import FeatureStats, frame_statistics, standardise_by_speaker


def test_each_speaker_is_standardised_with_its_own_statistics():
    gen = torch.Generator().manual_seed(0)
    frames = [torch.randn(n, 3, 4, generator=gen) * scale + shift
              for n, scale, shift in ((5, 2.0, 1.0), (7, 0.5, -3.0), (4, 2.0, 1.0), (9, 3.0, 5.0))]
    speakers = ["a", "b", "a", "c"]
    out = standardise_by_speaker(frames, speakers)
    assert [o.shape for o in out] == [f.shape for f in frames]
    for speaker in "abc":
        pooled = torch.cat([o for o, s in zip(out, speakers) if s == speaker]).double()
        torch.testing.assert_close(pooled.mean(0), torch.zeros(3, 4, dtype=torch.float64),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(pooled.std(0), torch.ones(3, 4, dtype=torch.float64),
                                   atol=1e-5, rtol=0)
    # speaker b alone: its frames depend only on its own statistics
    alone = standardise_by_speaker([frames[1]], ["b"])[0]
    torch.testing.assert_close(alone, out[1])


def test_statistics_of_one_frame_and_constant_features():
    mean, std = frame_statistics([torch.tensor([[1.0, 2.0]])])
    assert mean.tolist() == [1.0, 2.0] and std.tolist() == [1.0, 1.0]
    mean, std = frame_statistics([torch.full((6, 2), 3.0)])
    assert std.tolist() == pytest.approx([1e-5, 1e-5])


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="3 utterances but 2 speakers"):
        standardise_by_speaker([torch.zeros(1, 2)] * 3, ["a", "b"])


def test_feature_stats_fit_apply_and_state_round_trip():
    gen = torch.Generator().manual_seed(1)
    frames = [torch.randn(n, 5, generator=gen) * 3 + 2 for n in (4, 9)]
    stats = FeatureStats.fit(frames)
    standardised = torch.cat([stats.apply(f) for f in frames])
    torch.testing.assert_close(standardised.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(standardised.std(0), torch.ones(5), atol=1e-5, rtol=0)
    restored = FeatureStats.from_state(stats.state())
    assert torch.equal(restored.mean, stats.mean) and torch.equal(restored.std, stats.std)
    assert FeatureStats.from_state({}) is None
