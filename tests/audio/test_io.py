"""Audio I/O: round trips, mono mixing, resampling, every bad input, warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import soundfile
import torch

from fastser.audio import AudioWarning, load_audio, resample, save_audio, validate_waveform
from fastser.audio.io import CLIP_LEVEL, SILENCE_PEAK, _resampler


def tone(frequency: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def peak_frequency(samples: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(samples.double() * torch.hann_window(samples.shape[0],
                                                                     dtype=torch.float64))
    return float(spectrum.abs().argmax()) * rate / samples.shape[0]


@pytest.fixture
def quiet_warnings():
    """Turn any warning into an error: the block must not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- round trips ----------------------------------------------------------------------------

@pytest.mark.parametrize("extension,encoding,tolerance", [
    (".wav", "float32", 0.0),
    (".wav", "pcm16", 0.5 / 32768),
    (".flac", None, 0.5 / 32768),
    (".ogg", None, 0.05),  # vorbis is lossy
])
def test_round_trip(tmp_path, extension, encoding, tolerance, quiet_warnings):
    samples = tone(440.0, 16000) + tone(1234.0, 16000, amplitude=0.2)
    path = tmp_path / f"tone{extension}"
    save_audio(path, samples, 16000, encoding=encoding)
    loaded = load_audio(path)
    assert loaded.dtype == torch.float32 and loaded.shape == (16000,)
    assert float((loaded - torch.from_numpy(samples)).abs().max()) <= tolerance + 1e-7


def test_stereo_file_is_averaged_to_mono(tmp_path):
    left, right = tone(300.0, 16000), tone(700.0, 16000, amplitude=0.25)
    save_audio(tmp_path / "stereo.wav", np.stack([left, right]), 16000)
    assert soundfile.info(str(tmp_path / "stereo.wav")).channels == 2
    loaded = load_audio(tmp_path / "stereo.wav")
    torch.testing.assert_close(loaded, torch.from_numpy((left + right) / 2), rtol=0, atol=1e-7)


def test_in_memory_channels_tensor_and_int16():
    stereo = torch.from_numpy(np.stack([tone(300.0, 8000), tone(500.0, 8000)]))
    mono = validate_waveform(stereo, 8000, 8000)
    torch.testing.assert_close(mono, stereo.mean(0))
    pcm = (stereo[0].numpy() * 32767).round().astype(np.int16)
    torch.testing.assert_close(validate_waveform(pcm, 8000, 8000),
                               torch.from_numpy(pcm.astype(np.float32) / 32768))


@pytest.mark.parametrize("rate", [44100, 8000, 22050, 48000])
def test_resampling_keeps_length_and_pitch(tmp_path, rate):
    save_audio(tmp_path / "tone.wav", tone(440.0, rate, seconds=2.0), rate)
    loaded = load_audio(tmp_path / "tone.wav", 16000)
    assert loaded.shape == (math.ceil(2 * rate * 16000 / rate),)
    assert abs(peak_frequency(loaded, 16000) - 440.0) <= 0.5  # one bin is 0.5 Hz


def test_resampler_kernel_is_cached():
    first = _resampler(44100, 16000, torch.device("cpu"))
    resample(torch.zeros(441), 44100, 16000)
    assert _resampler(44100, 16000, torch.device("cpu")) is first
    assert resample(torch.ones(100), 16000, 16000).shape == (100,)


# --- bad files ------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(path)


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError):
        load_audio(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty \(0 bytes\).*empty\.wav"):
        load_audio(tmp_path / "empty.wav")


def test_text_file_named_wav(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 20)
    with pytest.raises(ValueError, match=r"cannot decode audio file .*notes\.wav: .*"
                                         r"[Ff]ormat not recognised"):
        load_audio(tmp_path / "notes.wav")


@pytest.mark.parametrize("cut", ["header", "half", "scrambled"])
def test_corrupt_flac(tmp_path, cut):
    save_audio(tmp_path / "good.flac", tone(440.0, 16000, seconds=3.0), 16000)
    data = (tmp_path / "good.flac").read_bytes()
    broken = {"header": data[:100], "half": data[:len(data) // 2],
              "scrambled": data[:200] + bytes(1000) + data[1200:]}[cut]
    (tmp_path / "bad.flac").write_bytes(broken)
    with pytest.raises(ValueError, match=r"cannot decode audio file .*bad\.flac: \S"):
        load_audio(tmp_path / "bad.flac")


def test_zero_length_file(tmp_path):
    soundfile.write(str(tmp_path / "nothing.wav"), np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match=r"zero length.*nothing\.wav"):
        load_audio(tmp_path / "nothing.wav")


def test_nan_in_file(tmp_path):
    samples = tone(440.0, 16000)
    samples[8000] = np.nan
    soundfile.write(str(tmp_path / "nan.wav"), samples, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan\.wav: contains NaN \(1 of 16000 .* sample 8000"):
        load_audio(tmp_path / "nan.wav")


# --- bad in-memory input --------------------------------------------------------------------

@pytest.mark.parametrize("fill,pattern", [
    (float("nan"), "every sample is NaN or infinite"),
    (float("inf"), "every sample is NaN or infinite"),
])
def test_all_non_finite(fill, pattern):
    with pytest.raises(ValueError, match=pattern):
        validate_waveform(torch.full((100,), fill), 16000)


def test_any_nan_and_inf():
    samples = torch.zeros(2, 1000)
    samples[1, 250] = float("nan")
    with pytest.raises(ValueError, match=r"contains NaN \(1 of 2000 .* sample 250"):
        validate_waveform(samples, 16000)
    samples[1, 250] = float("-inf")
    with pytest.raises(ValueError, match="contains infinite values"):
        validate_waveform(samples, 16000)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16000", None, True])
def test_bad_sample_rate(rate):
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        validate_waveform(torch.zeros(100), rate)


def test_bad_target_rate(tmp_path):
    with pytest.raises(ValueError, match="target_rate must be a positive integer"):
        load_audio(tmp_path / "x.wav", target_rate=0)


@pytest.mark.parametrize("samples,error,pattern", [
    (torch.zeros(0), ValueError, "zero-length"),
    (torch.zeros(2, 0), ValueError, "more channels than samples|zero-length"),
    (torch.zeros(16000, 2), ValueError, r"transpose an \(N, channels\)"),
    (torch.zeros(1, 2, 100), ValueError, r"expected shape \(N,\) or \(channels, N\)"),
    (torch.zeros(100, dtype=torch.bool), TypeError, "dtype torch.bool"),
    (np.zeros(100, dtype=np.complex64), TypeError, "dtype complex64"),
    ([0.0] * 100, TypeError, "torch.Tensor or numpy.ndarray"),
])
def test_bad_waveform(samples, error, pattern):
    with pytest.raises(error, match=pattern):
        validate_waveform(samples, 16000)


# --- warnings -------------------------------------------------------------------------------

def test_clipped_file_warns(tmp_path):
    square = np.sign(tone(100.0, 16000)).astype(np.float32)  # full scale: clipped
    save_audio(tmp_path / "clipped.wav", square, 16000, encoding="pcm16")
    with pytest.warns(AudioWarning, match=rf"clipped.*\|x\| >= {CLIP_LEVEL}"):
        load_audio(tmp_path / "clipped.wav")


def test_out_of_range_warns():
    samples = torch.from_numpy(tone(440.0, 16000, amplitude=0.5))
    samples[10] = 1.5
    with pytest.warns(AudioWarning, match="clipped .peak 1.5"):
        validate_waveform(samples, 16000)


@pytest.mark.parametrize("amplitude", [0.0, 1e-5])
def test_near_silent_warns(amplitude):
    samples = torch.from_numpy(tone(440.0, 16000, amplitude=amplitude))
    with pytest.warns(AudioWarning, match=rf"near silent .* below {SILENCE_PEAK} = -60 dBFS"):
        validate_waveform(samples, 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_waveform(samples, 16000, warn=False)


def test_normal_audio_does_not_warn(quiet_warnings):
    validate_waveform(tone(440.0, 16000, amplitude=0.9), 16000)
    validate_waveform(tone(440.0, 16000, amplitude=0.01), 16000)


# --- writer ---------------------------------------------------------------------------------

def test_save_audio_errors_and_pcm_clipping(tmp_path):
    with pytest.raises(ValueError, match="unsupported file extension '.mp3'"):
        save_audio(tmp_path / "x.mp3", tone(440.0, 16000), 16000)
    with pytest.raises(ValueError, match=".flac files cannot hold float32"):
        save_audio(tmp_path / "x.flac", tone(440.0, 16000), 16000, encoding="float32")
    with pytest.raises(ValueError, match="unknown encoding 'pcm24'"):
        save_audio(tmp_path / "x.wav", tone(440.0, 16000), 16000, encoding="pcm24")
    with pytest.raises(ValueError, match="x.wav: contains NaN"):
        save_audio(tmp_path / "x.wav", np.array([0.0, np.nan, 0.5], np.float32), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        save_audio(tmp_path / "x.wav", tone(440.0, 16000), 0)
    loud = tone(440.0, 16000, amplitude=2.0)
    with pytest.warns(AudioWarning, match="clipped when writing PCM16"):
        save_audio(tmp_path / "loud.wav", loud, 16000, encoding="pcm16")
    stored, _ = soundfile.read(str(tmp_path / "loud.wav"), dtype="int16")
    assert stored.max() == 32767 and stored.min() == -32768
    np.testing.assert_array_equal(stored, np.clip(np.round(loud * 32768), -32768, 32767))


def test_segments_of_a_file(tmp_path, quiet_warnings):
    """load_audio(start=, end=) reads exactly the frames of [start, end), resampled like the
    whole file; an end up to END_TOLERANCE past the file is clipped; AudioSpan names them."""
    from fastser.audio.io import END_TOLERANCE, AudioSpan

    samples = tone(330, 8000, seconds=2.0)
    path = tmp_path / "long.wav"
    save_audio(path, samples, 8000)
    part = load_audio(path, 8000, start=0.5, end=1.25)
    assert torch.equal(part, torch.from_numpy(samples[4000:10000]))
    assert load_audio(path, 16000, start=0.5, end=1.25).shape == (12000,)
    assert torch.equal(load_audio(path, 8000, start=1.5), torch.from_numpy(samples[12000:]))
    tail = load_audio(path, 8000, start=1.9, end=2.0 + END_TOLERANCE / 2)
    assert tail.shape == (800,)
    span = AudioSpan(path, 0.5, 1.25)
    assert str(span) == f"{path} [0.5-1.25 s]" and span.seconds() == pytest.approx(0.75)
    assert span.identity()[3:] == [0.5, 1.25] and AudioSpan(path).identity()[3:] == [None, None]
    assert AudioSpan(path, start=1.5).seconds() == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"long.wav \[2.5-end s\]: the segment starts at 2.5 s, "
                                         "past the end of the 2.000 s file"):
        load_audio(path, start=2.5)
    with pytest.raises(ValueError, match="the segment ends at 2.2 s, past the end"):
        load_audio(path, start=1.0, end=2.2)
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        AudioSpan(tmp_path / "none.wav").seconds()
