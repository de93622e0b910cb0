"""Fixtures for the audio tests: the reference speech turns of the pyannote sample recording
(the recording itself comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from conftest import sample_file


@pytest.fixture(scope="session")
def speech_turns() -> list[tuple[float, float]]:
    """(start, end) seconds of every reference speech turn (RTTM SPEAKER lines)."""
    turns = []
    for line in sample_file("sample.rttm").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            turns.append((start, start + duration))
    return turns
