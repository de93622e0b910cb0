"""RAVDESS reader (local copy of the speech/song audio files).

Layout read: ``Actor_<nn>/<mm>-<cc>-<ee>-<ii>-<ss>-<rr>-<aa>.wav`` with modality (01 audio-
video, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion, intensity
(01 normal, 02 strong), statement, repetition and actor; odd actors are male. Each actor is its
own session.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastser.data._files import (FOUR_CLASSES, CorpusError, no_audio, require_root,
                                 wav_files)
from fastser.data.corpus import Corpus, Utterance

NAME = "ravdess"
EIGHT_CLASSES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
EMOTIONS = {f"{i + 1:02d}": label for i, label in enumerate(EIGHT_CLASSES)}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_FILE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")


def read_ravdess(root: str | Path, *, four_class: bool = False, include_song: bool = False,
                 modalities: tuple[str, ...] = ("03",)) -> Corpus:
    """RAVDESS speech with its 8 classes, or with ``four_class`` neutral/happy/sad/angry only.

    By default only audio-only (modality 03) speech (channel 01) files are read;
    ``include_song`` adds channel 02, ``modalities`` picks other modality codes.
    """
    root = require_root(NAME, root)
    actor_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _ACTOR_DIR.match(p.name))
    files = [wav for d in actor_dirs for wav in wav_files(d)]
    if not files:
        raise no_audio(NAME, root, "Actor_<nn>/<mm>-<cc>-<ee>-<ii>-<ss>-<rr>-<aa>.wav")
    labels = FOUR_CLASSES if four_class else EIGHT_CLASSES
    channels = ("01", "02") if include_song else ("01",)
    utterances = []
    for wav in files:
        modality, channel, emotion, _intensity, statement, _rep, actor = _parse_name(wav)
        label = EMOTIONS[emotion]
        if modality not in modalities or channel not in channels or label not in labels:
            continue
        speaker = f"Actor_{actor}"
        utterances.append(Utterance(
            id=wav.stem, path=wav, label=label, speaker=speaker, session=speaker,
            gender="M" if int(actor) % 2 else "F", transcript=STATEMENTS[statement]))
    if not utterances:
        raise no_audio(NAME, root, f"modality {modalities}, channel {channels} files of "
                       f"the classes {labels}")
    return Corpus(NAME, labels, tuple(utterances))


def _parse_name(wav: Path) -> tuple[str, ...]:
    match = _FILE.match(wav.stem)
    if match is None:
        raise CorpusError(f"{wav}: file name is not 7 two-digit fields "
                          "modality-channel-emotion-intensity-statement-repetition-actor")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = ((modality, ("01", "02", "03"), "modality"), (channel, ("01", "02"), "vocal channel"),
              (emotion, tuple(EMOTIONS), "emotion"), (intensity, ("01", "02"), "intensity"),
              (statement, tuple(STATEMENTS), "statement"))
    for value, known, what in checks:
        if value not in known:
            raise CorpusError(f"{wav}: unknown {what} code {value!r}; known: {list(known)}")
    folder_actor = _ACTOR_DIR.match(wav.parent.name).group(1)
    if actor != folder_actor:
        raise CorpusError(f"{wav}: actor {actor} in the file name but folder "
                          f"{wav.parent.name}")
    return match.groups()
