"""CREMA-D reader (local copy of the repository).

Layout read: ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (e.g. ``1001_DFA_ANG_XX.wav``)
and, when present, ``VideoDemographics.csv`` (``ActorID,Age,Sex,Race,Ethnicity``) for the
actors' genders. CREMA-D has no sessions: each actor is its own session.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from fastser.data._files import (FOUR_CLASSES, CorpusError, line_error, no_audio,
                                 numbered_lines, require_root, wav_files)
from fastser.data.corpus import Corpus, Utterance

NAME = "crema-d"
SIX_CLASSES = ("neutral", "happy", "sad", "angry", "fearful", "disgust")
EMOTIONS = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry",
            "FEA": "fearful", "DIS": "disgust"}
LEVELS = {"LO", "MD", "HI", "XX"}
SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting", "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before",
    "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}
_FILE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_SEX = {"Male": "M", "Female": "F"}


def read_crema_d(root: str | Path, *, four_class: bool = False) -> Corpus:
    """CREMA-D with its 6 classes, or with ``four_class`` neutral/happy/sad/angry only
    (fearful and disgust skipped). Gender is None when ``VideoDemographics.csv`` is absent."""
    root = require_root(NAME, root)
    audio_dir = root / "AudioWAV"
    files = wav_files(audio_dir) if audio_dir.is_dir() else []
    if not files:
        raise no_audio(NAME, root, "AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav")
    genders = read_demographics(root / "VideoDemographics.csv")
    labels = FOUR_CLASSES if four_class else SIX_CLASSES
    utterances = []
    for wav in files:
        actor, sentence, emotion = _parse_name(wav)
        label = EMOTIONS[emotion]
        if label not in labels:
            continue
        utterances.append(Utterance(
            id=wav.stem, path=wav, label=label, speaker=actor, session=actor,
            gender=genders.get(actor), transcript=SENTENCES[sentence]))
    if not utterances:
        raise no_audio(NAME, root, f"files of the classes {labels}")
    return Corpus(NAME, labels, tuple(utterances))


def _parse_name(wav: Path) -> tuple[str, str, str]:
    match = _FILE.match(wav.stem)
    if match is None:
        raise CorpusError(f"{wav}: file name is not <actor>_<sentence>_<emotion>_<level>.wav "
                          "(e.g. 1001_DFA_ANG_XX.wav)")
    actor, sentence, emotion, level = match.groups()
    for value, known, what in ((sentence, SENTENCES, "sentence"), (emotion, EMOTIONS, "emotion"),
                               (level, LEVELS, "intensity level")):
        if value not in known:
            raise CorpusError(f"{wav}: unknown {what} code {value!r}; known: {sorted(known)}")
    return actor, sentence, emotion


def read_demographics(path: Path) -> dict[str, str]:
    """Actor id -> ``"F"``/``"M"`` from ``VideoDemographics.csv`` ({} when absent)."""
    if not path.is_file():
        return {}
    lines = list(numbered_lines(path))
    if not lines:
        raise CorpusError(f"{path}: empty file")
    header = next(csv.reader([lines[0][1]]))
    if "ActorID" not in header or "Sex" not in header:
        raise line_error(path, 1, f"header must name ActorID and Sex columns, got {header}")
    actor_col, sex_col = header.index("ActorID"), header.index("Sex")
    genders = {}
    for line_no, line in lines[1:]:
        if not line.strip():
            continue
        row = next(csv.reader(io.StringIO(line)))
        if len(row) != len(header):
            raise line_error(path, line_no, f"expected {len(header)} columns, got {len(row)}")
        actor, sex = row[actor_col].strip(), row[sex_col].strip()
        if not re.fullmatch(r"\d{4}", actor):
            raise line_error(path, line_no, f"malformed ActorID {actor!r}")
        if sex not in _SEX:
            raise line_error(path, line_no, f"Sex must be Male or Female, got {sex!r}")
        genders[actor] = _SEX[sex]
    return genders
