"""MFCC and MMTL log spectrogram: frame counts, agreement with torchaudio and with an
independent float64 computation, ragged batches, normalisation, scripting, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torchaudio
from optest import devices

from fastser.audio import MFCC, LogSpectrogram, log_spectrogram, mfcc


def speechlike(num_samples: int, seed: int = 0) -> torch.Tensor:
    """Harmonics with a moving pitch plus a little noise, amplitude about 0.3."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / 16000
    pitch = 120 + 40 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(pitch, 0) / 16000
    voice = sum(torch.sin(k * phase) / k for k in range(1, 8))
    noise = 0.01 * torch.randn(num_samples, generator=g, dtype=torch.float64)
    return (0.15 * voice + noise).float()


def ragged_batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    utterances = [speechlike(n, seed=i) for i, n in enumerate(lengths)]
    padded = torch.nn.utils.rnn.pad_sequence(utterances, batch_first=True)
    padded[0, lengths[0]:] = 0.7  # padding content must not matter
    return padded, torch.tensor(lengths), utterances


# --- MFCC -----------------------------------------------------------------------------------

@pytest.mark.parametrize("num_samples", [400, 401, 559, 560, 16000, 16161])
def test_mfcc_frame_count_formula(num_samples):
    module = MFCC()
    expected = (num_samples - 400) // 160 + 1
    assert module.num_frames(num_samples) == expected
    assert module(speechlike(num_samples)).shape == (expected, 40)
    assert module(speechlike(num_samples).repeat(2, 1)).shape == (2, expected, 40)


@pytest.mark.parametrize("config,melkwargs", [
    ({}, {"n_fft": 400, "win_length": 400, "hop_length": 160, "n_mels": 64}),
    ({"sample_rate": 8000, "n_mfcc": 13, "n_mels": 40, "n_fft": 256, "win_ms": 25.0,
      "hop_ms": 12.5, "f_min": 50.0, "f_max": 3800.0},
     {"n_fft": 256, "win_length": 200, "hop_length": 100, "n_mels": 40, "f_min": 50.0,
      "f_max": 3800.0}),
])
def test_mfcc_equals_torchaudio(config, melkwargs):
    module = MFCC(**config)
    rate = config.get("sample_rate", 16000)
    reference = torchaudio.transforms.MFCC(rate, config.get("n_mfcc", 40),
                                           melkwargs={**melkwargs, "center": False})
    waveform = speechlike(3 * rate)
    expected = reference(waveform).T
    torch.testing.assert_close(module(waveform), expected, rtol=1e-4, atol=1e-3)


def test_mfcc_without_top_db_against_float64():
    waveform = speechlike(8000)
    waveform[2000:5000] = 0.0  # silence: more than 80 dB below the peak
    frames = waveform.double().unfold(0, 400, 160) * torch.hann_window(400, dtype=torch.float64)
    power = torch.fft.rfft(frames).abs() ** 2
    fbank = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 64, 16000).double()
    db = 10 * torch.log10((power @ fbank).clamp(min=1e-10))
    expected = db @ torchaudio.functional.create_dct(40, 64, "ortho").double()
    torch.testing.assert_close(MFCC(top_db=None)(waveform).double(), expected,
                               rtol=1e-4, atol=2e-3)
    assert not torch.allclose(MFCC()(waveform).double(), expected, atol=1.0)


@pytest.mark.parametrize("device", devices())
def test_mfcc_ragged_equals_per_utterance(device):
    lengths = [16000, 400, 9999, 12345]
    padded, lengths_t, utterances = ragged_batch(lengths)
    module = MFCC().to(device)
    features, frame_lengths = module.ragged(padded.to(device), lengths_t.to(device))
    assert features.device.type == device and features.shape == (4, 98, 40)
    assert frame_lengths.tolist() == [module.num_frames(n) for n in lengths]
    for row, utterance, count in zip(features, utterances, frame_lengths.tolist()):
        torch.testing.assert_close(row[:count], module(utterance.to(device)), rtol=1e-5,
                                   atol=1e-4)
        assert bool((row[count:] == 0).all())
    functional, functional_lengths = mfcc(padded.to(device), lengths_t.to(device))
    torch.testing.assert_close(functional, features)
    assert torch.equal(functional_lengths, frame_lengths)


def test_mfcc_batched_equals_per_utterance_without_lengths():
    batch = torch.stack([speechlike(8000, seed=s) for s in range(3)])
    features = MFCC()(batch)
    for row, waveform in zip(features, batch):
        torch.testing.assert_close(row, MFCC()(waveform))


@pytest.mark.parametrize("call,pattern", [
    (lambda m: m(torch.zeros(399)), "399 samples is shorter than one frame .400"),
    (lambda m: m(torch.zeros(2, 3, 400)), r"waveform must be \(B, N\)"),
    (lambda m: m(torch.zeros(2, 400, dtype=torch.int16)), "must be a float tensor"),
    (lambda m: m.ragged(torch.zeros(2, 800), torch.tensor([800])), r"lengths must be \(2,\)"),
    (lambda m: m.ragged(torch.zeros(2, 800), torch.tensor([800.0, 800.0])), "int64"),
    (lambda m: m.ragged(torch.zeros(2, 800), torch.tensor([800, 300])), "length of 300 .* "
                                                                         "shorter than one frame"),
    (lambda m: m.ragged(torch.zeros(2, 800), torch.tensor([801, 500])), "exceeds the padded"),
])
def test_mfcc_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(MFCC())


def test_mfcc_bad_config():
    with pytest.raises(ValueError, match="n_fft .300. must be >= the window .400"):
        MFCC(n_fft=300)
    with pytest.raises(ValueError, match="n_mfcc <= n_mels"):
        MFCC(n_mfcc=80, n_mels=64)
    with pytest.raises(ValueError, match="hop_ms must give at least one sample"):
        MFCC(hop_ms=0.0)


SCRIPT_DEPRECATION = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


@SCRIPT_DEPRECATION
def test_mfcc_scripted():
    module = MFCC()
    scripted = torch.jit.script(module)
    padded, lengths, _ = ragged_batch([4000, 1000])
    torch.testing.assert_close(scripted(padded), module(padded))
    for got, want in zip(scripted.ragged(padded, lengths), module.ragged(padded, lengths)):
        torch.testing.assert_close(got, want)
    with pytest.raises(Exception, match="shorter than one frame"):
        scripted.ragged(padded, torch.tensor([4000, 10]))


# --- log spectrogram ------------------------------------------------------------------------

def log_power_float64(waveform: torch.Tensor) -> torch.Tensor:
    """Independent (frames, 200) log power: periodic Hamming (scipy), zero-padded DFT of 800."""
    window = torch.from_numpy(scipy.signal.get_window("hamming", 640, fftbins=True))
    frames = waveform.double().unfold(0, 640, 160) * window
    spectrum = np.fft.rfft(frames.numpy(), n=800, axis=-1)[:, :200]
    return torch.log(torch.from_numpy(np.abs(spectrum) ** 2) + 1e-10)


@pytest.mark.parametrize("seconds,frames", [(3.0, 297), (1.0, 97), (5.0, 300)])
def test_log_spectrogram_shape_and_values(seconds, frames):
    waveform = speechlike(int(seconds * 16000))
    module = LogSpectrogram()
    features, frame_lengths = module.ragged(waveform[None], None)
    assert features.shape == (1, 300, 200) and frame_lengths.tolist() == [frames]
    assert module(waveform).shape == (300, 200)
    reference = log_power_float64(waveform)[:300]
    expected = (reference - reference.mean()) / torch.sqrt(reference.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(features[0, :frames].double(), expected, rtol=1e-4, atol=1e-4)
    assert bool((features[0, frames:] == 0).all())
    valid = features[0, :frames].double()
    assert abs(float(valid.mean())) < 1e-5 and abs(float(valid.std(unbiased=False)) - 1) < 1e-4


def test_log_spectrogram_bins_are_20_hz_up_to_4_khz():
    t = torch.arange(48000) / 16000
    for frequency in (500.0, 1000.0, 3500.0):
        features = LogSpectrogram()(0.5 * torch.sin(2 * torch.pi * frequency * t))
        assert int(features[:297].mean(0).argmax()) == int(frequency / 20)


def test_log_spectrogram_silent_segment_is_finite():
    features, frame_lengths = log_spectrogram(torch.zeros(2, 48000),
                                              torch.tensor([48000, 2000]))
    assert bool(torch.isfinite(features).all())
    assert float(features.abs().max()) < 1e-2
    assert frame_lengths.tolist() == [297, 9]


@pytest.mark.parametrize("device", devices())
def test_log_spectrogram_ragged_equals_per_utterance(device):
    lengths = [48000, 640, 20000, 64000]
    padded, lengths_t, utterances = ragged_batch(lengths)
    module = LogSpectrogram().to(device)
    features, frame_lengths = module.ragged(padded.to(device), lengths_t.to(device))
    assert features.shape == (4, 300, 200)
    assert frame_lengths.tolist() == [min(300, module.num_frames(n)) for n in lengths]
    for row, utterance in zip(features, utterances):
        torch.testing.assert_close(row, module(utterance.to(device)), rtol=1e-4, atol=1e-4)


@SCRIPT_DEPRECATION
def test_log_spectrogram_scripted_and_errors():
    module = LogSpectrogram()
    scripted = torch.jit.script(module)
    padded, lengths, _ = ragged_batch([48000, 8000])
    for got, want in zip(scripted.ragged(padded, lengths), module.ragged(padded, lengths)):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="639 samples is shorter than one frame .640"):
        module(torch.zeros(639))
    with pytest.raises(ValueError, match="max_freq 9000.0 Hz gives 450 bins"):
        LogSpectrogram(max_freq=9000.0)
    with pytest.raises(ValueError, match="max_frames must be >= 1"):
        LogSpectrogram(max_frames=0)
