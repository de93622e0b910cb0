"""EmoDB (Berlin Database of Emotional Speech) reader.

Layout read: ``wav/<ss><ttt><e><v>.wav`` (e.g. ``03a01Fa.wav``): speaker, text code, German
emotion letter, version. Each speaker is its own session; genders come from the documented
speaker table.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastser.data._files import (FOUR_CLASSES, CorpusError, no_audio, require_root,
                                 wav_files)
from fastser.data.corpus import Corpus, Utterance

NAME = "emodb"
SEVEN_CLASSES = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom")
EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy",
            "T": "sad", "N": "neutral"}
SPEAKER_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M",
                   "13": "F", "14": "F", "15": "M", "16": "F"}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
_FILE = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")


def read_emodb(root: str | Path, *, four_class: bool = False) -> Corpus:
    """EmoDB with its 7 classes, or with ``four_class`` neutral/happy/sad/angry only."""
    root = require_root(NAME, root)
    audio_dir = root / "wav"
    files = wav_files(audio_dir) if audio_dir.is_dir() else []
    if not files:
        raise no_audio(NAME, root, "wav/<speaker><text><emotion><version>.wav")
    labels = FOUR_CLASSES if four_class else SEVEN_CLASSES
    utterances = []
    for wav in files:
        match = _FILE.match(wav.stem)
        if match is None:
            raise CorpusError(f"{wav}: file name is not <speaker><text><emotion><version>.wav "
                              "(e.g. 03a01Fa.wav)")
        speaker, text, letter, _version = match.groups()
        if speaker not in SPEAKER_GENDERS:
            raise CorpusError(f"{wav}: unknown speaker {speaker!r}; "
                              f"known: {sorted(SPEAKER_GENDERS)}")
        if text not in TEXTS:
            raise CorpusError(f"{wav}: unknown text code {text!r}; known: {sorted(TEXTS)}")
        if letter not in EMOTIONS:
            raise CorpusError(f"{wav}: unknown emotion letter {letter!r}; "
                              f"known: {sorted(EMOTIONS)}")
        label = EMOTIONS[letter]
        if label not in labels:
            continue
        utterances.append(Utterance(
            id=wav.stem, path=wav, label=label, speaker=speaker, session=speaker,
            gender=SPEAKER_GENDERS[speaker], transcript=TEXTS[text]))
    if not utterances:
        raise no_audio(NAME, root, f"files of the classes {labels}")
    return Corpus(NAME, labels, tuple(utterances))
