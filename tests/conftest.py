"""Fixtures shared by every test folder: the pyannote sample recording (30 s, 16 kHz, two
speakers, real speech), found through the installed distribution's files, and a tiny
synthetic corpus."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest
import torch

SAMPLE_DIR = "pyannote/audio/sample"

# The same numbers on every CPU: --amp auto trains in float32 here (and in the processes the
# tests start); tests/train/test_precision.py turns CPU bf16 on where it tests it.
os.environ["FASTSER_CPU_BF16"] = "0"


def sample_file(name: str) -> Path:
    """A file of pyannote-audio's sample folder; skips the test when it is not installed."""
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
    return sample_file("sample.wav")


@pytest.fixture(scope="session")
def sample_audio(sample_path) -> torch.Tensor:
    from fastser.audio import load_audio

    return load_audio(sample_path)


@pytest.fixture(scope="session")
def tiny_corpus():
    """The synthetic corpus at 40 utterances of 4 voices (cached), for the method tests."""
    from fastser.data.synthetic import SyntheticConfig, load_synthetic

    return load_synthetic(SyntheticConfig(utterances=40, speakers=4))
