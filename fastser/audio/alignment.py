"""Word timings and aligned segmentation of audio at word boundaries (CAN)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WordTiming:
    """One word of a transcript and where it is spoken, in seconds from the utterance start."""

    word: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.word:
            raise ValueError("WordTiming: word must be a non-empty string")
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ValueError(f"WordTiming {self.word!r}: start and end must be finite, "
                             f"got {self.start}, {self.end}")
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"WordTiming {self.word!r}: needs 0 <= start <= end, "
                             f"got start={self.start}, end={self.end}")

    @property
    def duration(self) -> float:
        return self.end - self.start
