"""Fixtures of the inference tests: random checkpoints of each method and a folder of short
recordings (tests/random_models.py makes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from random_models import save_random_checkpoint, write_wavs


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """A function method -> the path of its random checkpoint (saved once per session)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    saved: dict[str, Path] = {}

    def get(method: str) -> Path:
        if method not in saved:
            saved[method] = save_random_checkpoint(folder / f"{method}.pt", method)
        return saved[method]

    return get


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> Path:
    """A folder of five recordings of 0.5-4.2 s, two in a subfolder, one with an upper-case
    extension, plus a text file that is not audio."""
    folder = tmp_path_factory.mktemp("recordings")
    write_wavs(folder, [1.0, 2.7, 4.2, 0.5, 3.3], seed=10,
               names=["a0.wav", "sub/a1.wav", "a2.wav", "sub/deeper/A3.WAV", "a4.flac"])
    (folder / "notes.txt").write_text("not audio")
    return folder
