"""Fixtures for the audio tests: the pyannote sample recording (30 s, 16 kHz, two speakers)
and its reference speech turns, found through the installed distribution's files."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

SAMPLE_DIR = "pyannote/audio/sample"


def _sample_file(name: str) -> Path:
    try:
        path = Path(importlib.metadata.distribution("pyannote-audio").locate_file(
            f"{SAMPLE_DIR}/{name}"))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pyannote-audio (for its sample recording) is not installed")
    if not path.exists():
        pytest.skip(f"pyannote-audio's {name} is missing")
    return path


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return _sample_file("sample.wav")


@pytest.fixture(scope="session")
def sample_audio(sample_path) -> torch.Tensor:
    from fastser.audio import load_audio

    return load_audio(sample_path)


@pytest.fixture(scope="session")
def speech_turns() -> list[tuple[float, float]]:
    """(start, end) seconds of every reference speech turn (RTTM SPEAKER lines)."""
    turns = []
    for line in _sample_file("sample.rttm").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            turns.append((start, start + duration))
    return turns
