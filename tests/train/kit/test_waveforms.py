"""The waveform check every recipe relies on: errors name the method and the recording."""

import pytest
import torch

from fastser.errors import AudioError
from fastser.train.kit import check_waveform


def test_a_valid_waveform_comes_back_as_float32():
    wave = torch.randn(1600, dtype=torch.float64)
    out = check_waveform(wave, "m", "utterance 'u'")
    assert out.dtype == torch.float32 and torch.equal(out, wave.float())


@pytest.mark.parametrize("wave, expected", [
    (torch.zeros(2, 100), "m: utterance 'u': expected a 1-D float tensor"),
    (torch.zeros(100, dtype=torch.int16), "m: utterance 'u': expected a 1-D float tensor"),
    ([0.0, 1.0], "m: utterance 'u': expected a 1-D float tensor"),
    (torch.zeros(0), "m: utterance 'u': zero-length audio"),
    (torch.tensor([0.0, float("nan"), 0.0]), "m: utterance 'u': contains NaN"),
    (torch.zeros(399), "m: utterance 'u' has 399 samples, fewer than the 400 \\(25 ms\\)"),
])
def test_bad_waveforms_are_audio_errors(wave, expected):
    with pytest.raises(AudioError, match=expected):
        check_waveform(wave, "m", "utterance 'u'", min_samples=400)
