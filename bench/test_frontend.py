"""Throughput of the audio front end shared by all five models (records, not comparisons).

A batch of 32 utterances of 2-8 s cut from pyannote's sample recording (16 kHz speech):
MFCC and MMTL log spectrogram in utterances per second, GLRF windows and MMTL pieces in
utterances per second, WebRTC VAD on SSL frames in seconds of audio per second, and once,
VAD over one hour of audio.

    pytest bench/test_frontend.py --benchmark-only [--bench-device cuda]
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

from fastser.audio import (MFCC, LogSpectrogram, equal_pieces, fixed_windows, load_audio,
                           ssl_vad_mask)

RATE = 16000
BATCH = 32


def _sample_path() -> Path:
    try:
        path = Path(importlib.metadata.distribution("pyannote-audio").locate_file(
            "pyannote/audio/sample/sample.wav"))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pyannote-audio (for its sample recording) is not installed")
    return path


@pytest.fixture(scope="module")
def recording() -> torch.Tensor:
    return load_audio(_sample_path())


@pytest.fixture(scope="module")
def utterances(recording) -> list[torch.Tensor]:
    """BATCH utterances of 2-8 s at consecutive offsets through the recording (wrapping)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2 * RATE, 8 * RATE + 1, (BATCH,), generator=g).tolist()
    looped = recording.repeat(1 + sum(lengths) // recording.shape[0])
    offsets = [sum(lengths[:i]) for i in range(BATCH)]
    return [looped[o:o + n].clone() for o, n in zip(offsets, lengths)]


@pytest.fixture(scope="module")
def device(request) -> torch.device:
    device = torch.device(request.config.getoption("--bench-device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return device


def _padded(utterances, device) -> tuple[torch.Tensor, torch.Tensor]:
    padded = torch.nn.utils.rnn.pad_sequence(utterances, batch_first=True).to(device)
    lengths = torch.tensor([u.shape[0] for u in utterances], device=device)
    return padded, lengths


def _run(benchmark, function, device: torch.device, items: float, unit: str) -> None:
    def call():
        result = function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    benchmark.group = "audio front end"
    benchmark(call)
    if benchmark.stats is not None:
        benchmark.extra_info[unit] = round(items / benchmark.stats.stats.mean, 1)


def test_mfcc(benchmark, utterances, device):
    padded, lengths = _padded(utterances, device)
    module = MFCC().to(device)
    with torch.no_grad():
        _run(benchmark, lambda: module.ragged(padded, lengths), device, BATCH,
             "utterances_per_s")


def test_log_spectrogram(benchmark, utterances, device):
    pieces = equal_pieces(utterances)  # the MMTL input: <= 3 s pieces, padded to 3 s
    segments, lengths = pieces.segments.to(device), pieces.lengths.to(device)
    module = LogSpectrogram().to(device)
    with torch.no_grad():
        _run(benchmark, lambda: module.ragged(segments, lengths), device, BATCH,
             "utterances_per_s")


@pytest.mark.parametrize("hop", [0.2, 0.4], ids=["train-hop0.2", "test-hop0.4"])
def test_fixed_windows(benchmark, utterances, device, hop):
    padded, lengths = _padded(utterances, device)
    _run(benchmark, lambda: fixed_windows(padded, lengths, window=2.0, hop=hop), device, BATCH,
         "utterances_per_s")


def test_equal_pieces(benchmark, utterances, device):
    padded, lengths = _padded(utterances, device)
    _run(benchmark, lambda: equal_pieces(padded, lengths), device, BATCH, "utterances_per_s")


def test_vad_batch(benchmark, utterances):
    seconds = sum(u.shape[0] for u in utterances) / RATE
    _run(benchmark, lambda: ssl_vad_mask(utterances), torch.device("cpu"), seconds,
         "audio_seconds_per_s")


def test_vad_one_hour(benchmark, recording):
    hour = recording.repeat(120)  # 30 s x 120
    benchmark.group = "audio front end"
    benchmark.pedantic(ssl_vad_mask, args=([hour],), rounds=1, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["audio_seconds_per_s"] = round(3600 / benchmark.stats.stats.mean)
