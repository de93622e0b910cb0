"""Training augmentation: speed-perturbed and noisy copies, SpecAugment masks, and the training
items an epoch sees (deterministic per seed, epoch and item; training only)."""

import math

import pytest
import torch

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE
from fastser.data.corpus import Utterance
from fastser.errors import SettingsError
from fastser.methods import make_recipe
from fastser.train.kit.augment import (add_noise, mask_frames, speed_perturb,
                                       speed_utterance)
from toy_recipe import LABELS, FramesToyRecipe, make_frame_items


def _peak_hz(waveform):
    spectrum = torch.fft.rfft(waveform.double() * torch.hann_window(len(waveform),
                                                                     dtype=torch.float64))
    return float(spectrum.abs().argmax()) * SAMPLE_RATE / len(waveform)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_scales_duration_and_pitch(factor):
    seconds = torch.arange(SAMPLE_RATE, dtype=torch.float64) / SAMPLE_RATE
    tone = torch.sin(2 * math.pi * 440.0 * seconds).float()
    fast = speed_perturb(tone, factor)
    assert fast.shape[0] == pytest.approx(SAMPLE_RATE / factor, abs=2)
    assert _peak_hz(fast) == pytest.approx(440.0 * factor, abs=2.0)


def test_noise_has_the_requested_snr_and_follows_the_generator():
    waveform = 0.3 * torch.randn(SAMPLE_RATE, generator=torch.Generator().manual_seed(1))
    noisy = add_noise(waveform, 10.0, torch.Generator().manual_seed(2))
    noise = (noisy - waveform).double()
    snr = 10 * math.log10(waveform.double().pow(2).mean() / noise.pow(2).mean())
    assert snr == pytest.approx(10.0, abs=0.01)
    assert torch.equal(noisy, add_noise(waveform, 10.0, torch.Generator().manual_seed(2)))
    assert not torch.equal(noisy, add_noise(waveform, 10.0, torch.Generator().manual_seed(3)))


def test_speed_perturbed_utterance_times_scale():
    utterance = Utterance("u", "x.wav", "happy", "s", "s", duration=2.2,
                          words=(WordTiming("a", 0.0, 1.1), WordTiming("b", 1.1, 2.2)),
                          emotion_span=(0.0, 1.1))
    fast = speed_utterance(utterance, 1.1)
    assert [t for w in fast.words for t in (w.start, w.end)] == pytest.approx([0, 1, 1, 2])
    assert fast.emotion_span == pytest.approx((0.0, 1.0))
    assert fast.duration == pytest.approx(2.0)


def test_masks_set_runs_to_the_mean_and_are_deterministic():
    frames = torch.randn(50, 3, 16, generator=torch.Generator().manual_seed(0))
    options = dict(time_masks=2, time_width=0.2, feature_masks=2, feature_width=4)
    masked = mask_frames(frames, torch.Generator().manual_seed(5), **options)
    assert masked.shape == frames.shape
    mean = frames.mean(0)
    changed = masked != frames
    assert changed.any()
    assert torch.allclose(masked[changed], mean.expand_as(masked)[changed])  # set to the mean
    time_masked = (masked == mean).flatten(1).all(1)
    feature_masked = (masked == mean).all(0).all(0)
    assert int(time_masked.sum()) <= 2 * 10  # 2 masks of at most 0.2 x 50 frames
    assert int(feature_masked.sum()) <= 2 * 4  # 2 masks of at most 4 coefficients
    assert torch.equal(masked, mask_frames(frames, torch.Generator().manual_seed(5), **options))
    assert not torch.equal(masked, mask_frames(frames, torch.Generator().manual_seed(6),
                                               **options))
    none = mask_frames(frames, torch.Generator(), time_masks=0, time_width=0.1,
                       feature_masks=0, feature_width=4)
    assert torch.equal(none, frames)


def _copies(items):
    """Two recognisable copies of each item: its frames + 100 and + 200."""
    return [[(x + 100.0, y), (x + 200.0, y)] for x, y in items]


def test_training_items_are_a_pure_function_of_seed_epoch_and_index():
    items = make_frame_items(12)
    recipe = FramesToyRecipe(LABELS, time_masks=1, feature_masks=1)
    view = recipe.training_items(items, _copies(items), seed=3)
    view.set_epoch(2)
    forward = [view[i][0] for i in range(len(items))]
    backward = [view[i][0] for i in reversed(range(len(items)))][::-1]
    again = recipe.training_items(items, _copies(items), seed=3)
    again.set_epoch(2)
    for a, b, c in zip(forward, backward, [again[i][0] for i in range(len(items))]):
        assert torch.equal(a, b) and torch.equal(a, c)
    view.set_epoch(3)
    assert any(not torch.equal(a, view[i][0]) for i, a in enumerate(forward))
    # every version is drawn over the epochs, and the originals are never modified
    offsets = set()
    for epoch in range(20):
        view.set_epoch(epoch)
        offsets.add(round(float(view[0][0].mean() - items[0][0].mean()), -2))
    assert offsets == {0.0, 100.0, 200.0}
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(items, make_frame_items(12)))


def test_without_augmentation_training_items_are_the_items():
    items = make_frame_items(5)
    view = FramesToyRecipe(LABELS).training_items(items, None, seed=0)
    assert all(view[i] is items[i] for i in range(5))
    assert view[1:3] == items[1:3]


def test_augmented_copies_of_corpus_utterances(tiny_corpus):
    utterances = list(tiny_corpus)[:6]
    recipe = make_recipe("transformer", tiny_corpus.labels, speed_perturb=[0.9, 1.1],
                         noise_snr=[20, 20], speaker_norm=True, embed_dim=8, num_heads=2)
    originals = recipe.featurize(utterances)
    copies = recipe.augmented_copies(utterances)
    assert [len(c) for c in copies] == [3] * 6
    for original, (slow, fast, noisy) in zip(originals, copies):
        assert slow.label == fast.label == noisy.label == original.label
        assert slow.frames.shape[0] > original.frames.shape[0] > fast.frames.shape[0]
        assert noisy.frames.shape == original.frames.shape
        assert not torch.equal(noisy.frames, original.frames)
    # each kind of copy is standardised per speaker on its own
    speaker = utterances[0].speaker
    fast = torch.cat([c[1].frames for c, u in zip(copies, utterances) if u.speaker == speaker])
    assert torch.allclose(fast.double().mean(0), torch.zeros(fast.shape[1], dtype=torch.float64),
                          atol=1e-4)
    # the same copies again, in any order (noise seeded by the utterance id)
    again = recipe.augmented_copies(utterances[::-1])[::-1]
    assert all(torch.equal(a[2].frames, b[2].frames) for a, b in zip(again, copies))
    assert make_recipe("transformer", tiny_corpus.labels).augmented_copies(utterances) == \
        [[]] * 6


@pytest.mark.parametrize("method, settings, message", [
    ("transformer", {"noise_snr": [20, 10]}, "noise_snr"),
    ("transformer", {"speed_perturb": [1.0, 1.1]}, "speed_perturb"),
    ("mmtl", {"speed_perturb": [1.1]}, "speed_perturb"),
    ("sap", {"time_masks": 1, "frozen": False}, "frozen"),
])
def test_augmentation_settings_are_checked(method, settings, message):
    with pytest.raises(SettingsError, match=message):
        make_recipe(method, LABELS, **settings)
