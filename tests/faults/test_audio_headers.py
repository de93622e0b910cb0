"""Audio bounds from the header, before decoding: a sample rate fastser reads, a maximum
duration (configurable), truncated files detected, special files refused, extensions matched
in any case."""

import os
import struct
import warnings

import numpy as np
import pytest
import soundfile
import torch

from fastser.audio import io
from fastser.audio.io import AudioWarning, load_audio, validate_waveform
from fastser.data.emodb import read_emodb
from fastser.errors import AudioError, SettingsError
from faults.helpers import user_error


def _wav(path, seconds=1.0, rate=16000):
    samples = (0.1 * np.sin(np.arange(int(seconds * rate)) / 7.0)).astype(np.float32)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def _declare_rate(path, rate):
    """Rewrite a PCM16 mono WAV header's sample rate (and byte rate) in place."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<II", data, 24, rate, 2 * rate)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture()
def no_decoding(monkeypatch):
    """Fails the test if any audio is decoded (the header alone must decide)."""
    def read(*args, **kw):
        raise AssertionError("decoded although the header is out of bounds")
    monkeypatch.setattr(soundfile, "read", read)


@pytest.mark.parametrize("rate", [1, 999, 384001, 2**31 - 1])
def test_a_sample_rate_outside_the_bounds_is_refused_from_the_header(rate, tmp_path,
                                                                     no_decoding):
    path = _declare_rate(_wav(tmp_path / "x.wav", seconds=2.0), rate)
    with pytest.raises(AudioError, match=rf"sample rate {rate} Hz is outside the rates fastser "
                                         r"reads \(1000 to 384000 Hz\)"):
        load_audio(path)


def test_the_issue_file_600_kb_at_1_hz(trained_run, tmp_path, capsys, no_decoding):
    """600 KB declaring 1 Hz would resample to 19 GB: one line, nothing allocated."""
    path = _declare_rate(_wav(tmp_path / "slow.wav", seconds=300000 / 16000), 1)
    assert path.stat().st_size > 590_000
    line = user_error(["predict", "--checkpoint", str(trained_run / "best.pt"), str(path)],
                      capsys)
    assert "sample rate 1 Hz" in line


def test_in_memory_waveforms_have_the_same_rate_bounds():
    with pytest.raises(AudioError, match="sample rate 1 Hz"):
        validate_waveform(torch.zeros(100), 1)


def test_the_longest_audio_is_configurable(tmp_path, monkeypatch, no_decoding):
    path = _wav(tmp_path / "x.wav", seconds=3.0)
    monkeypatch.setenv(io.MAX_SECONDS_ENV, "2.5")
    with pytest.raises(AudioError, match=r"3.0 s of audio \(48000 samples at 16000 Hz\) is "
                                         r"longer than the 2.5 s fastser reads"):
        load_audio(path)
    with pytest.raises(AudioError, match="longer than the 1 s"):
        load_audio(path, max_seconds=1)
    for bad in ("abc", "0", "-1", "inf", "nan"):
        monkeypatch.setenv(io.MAX_SECONDS_ENV, bad)
        with pytest.raises(SettingsError, match=f"{io.MAX_SECONDS_ENV} must be a positive"):
            load_audio(path)


def test_the_default_limit_is_three_hours(monkeypatch):
    monkeypatch.delenv(io.MAX_SECONDS_ENV, raising=False)
    assert io.max_audio_seconds() == io.DEFAULT_MAX_SECONDS == 3 * 3600


def test_within_the_limit_reads(tmp_path, monkeypatch):
    monkeypatch.setenv(io.MAX_SECONDS_ENV, "3")
    assert load_audio(_wav(tmp_path / "x.wav", seconds=3.0)).shape == (48000,)


def test_a_truncated_wav_is_detected(tmp_path):
    """The header declares 2 s, the file holds 0.02 s (a copy cut short)."""
    full = _wav(tmp_path / "full.wav", seconds=2.0).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(full[:44 + 640])
    with pytest.warns(AudioWarning, match=r"truncated file: its header declares 32000 samples "
                                          r"\(2.000 s\), it holds 320 \(0.020 s\)"):
        assert load_audio(path).shape == (320,)


def test_a_complete_wav_gives_no_truncation_warning(tmp_path):
    path = _wav(tmp_path / "x.wav", seconds=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        load_audio(path)


def test_a_named_pipe_is_not_read(tmp_path, trained_run, capsys):
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(AudioError, match="is not a regular file"):
        load_audio(tmp_path / "pipe.wav")  # would block forever if opened
    line = user_error(["predict", "--checkpoint", str(trained_run / "best.pt"),
                       str(tmp_path / "pipe.wav")], capsys)
    assert "not a regular file" in line and "empty" not in line


def test_emodb_reads_upper_case_extensions(tmp_path):
    wav = tmp_path / "emodb" / "wav"
    wav.mkdir(parents=True)
    _wav(wav / "03a01Fa.WAV")
    _wav(wav / "08b02Wb.wav")
    corpus = read_emodb(tmp_path / "emodb")
    assert [u.id for u in corpus] == ["03a01Fa", "08b02Wb"]
    assert load_audio(corpus[0].path).shape == (16000,)


def test_iemocap_finds_audio_whose_extension_changed_case(tmp_path):
    from fastser.data._files import find_file

    folder = tmp_path / "wav"
    folder.mkdir()
    (folder / "Ses01F_impro01_F000.WAV").write_bytes(b"x")
    assert find_file(folder / "Ses01F_impro01_F000.wav") == folder / "Ses01F_impro01_F000.WAV"
    assert find_file(folder / "missing.wav") == folder / "missing.wav"
