"""IEMOCAP reader (local copy of the full release).

Layout read::

    Session{1..5}/dialog/EmoEvaluation/<dialog>.txt          labels and [V, A, D]
    Session{1..5}/sentences/wav/<dialog>/<utt>.wav            audio
    Session{1..5}/sentences/ForcedAlignment/<dialog>/<utt>.wdseg   word alignment (optional)
    Session{1..5}/dialog/transcriptions/<dialog>.txt          transcripts (optional)

An EmoEvaluation summary line is ``[start - end]<TAB>utt<TAB>emo<TAB>[V, A, D]``; the per-
annotator lines (``C-E1:``, ``A-F2:`` ...) and the ``%`` header are skipped. Utterance
``Ses01F_impro01_F000`` is dialog ``Ses01F_impro01``, session ``Ses01``, gender ``F`` (the
letter starting its last part), speaker ``Ses01F``. macOS ``._*`` files are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastser.audio.alignment import WordTiming
from fastser.data._files import (FOUR_CLASSES, CorpusError, find_file, line_error, no_audio,
                                 numbered_lines, require_root)
from fastser.data.corpus import Corpus, Utterance

NAME = "iemocap"
#: Every emotion code of the release; codes outside the class set are skipped.
CODES = {"neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis", "oth", "xxx"}
_FOUR = {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry"}
#: CAN's seven classes (Lee et al., Sec. 4.1: every class but fear, disgust and other).
SEVEN_CLASSES = FOUR_CLASSES + ("excited", "frustrated", "surprised")
_SEVEN = dict(_FOUR, exc="excited", fru="frustrated", sur="surprised")

_NUM = r"(-?\d+(?:\.\d+)?)"
_SUMMARY = re.compile(
    rf"^\[{_NUM}\s*-\s*{_NUM}\]\t(\S+)\t(\S+)\t\[{_NUM},\s*{_NUM},\s*{_NUM}\]\s*$")
_ANNOTATOR = re.compile(r"^[A-Z]+-[A-Z]+\d*:")
_UTT_ID = re.compile(r"^(Ses\d\d)([FM])_(\S+)_([FM])\w*$")
_TRANSCRIPT = re.compile(r"^(\S+) \[[\d.]+-[\d.]+\]:\s?(.*)$")
_VARIANT = re.compile(r"\(\d+\)$")
FRAMES_PER_SECOND = 100


def read_iemocap(root: str | Path, *, merge_excited: bool | None = None,
                 improvised_only: bool = False, classes: int = 4) -> Corpus:
    """The 4-class IEMOCAP corpus (neutral, happy, sad, angry), or with ``classes=7`` CAN's
    seven (those and excited, frustrated, surprised).

    merge_excited: label ``exc`` as happy (the common 4-class protocol; the default with 4
    classes); False skips it (MMTL's protocol). The 7-class set keeps excited as a class.
    improvised_only: keep only utterances of ``*_impro*`` dialogs.
    """
    if classes not in (4, 7):
        raise CorpusError(f"{NAME}: classes must be 4 or 7, got {classes!r}")
    if classes == 7 and merge_excited:
        raise CorpusError(f"{NAME}: merge_excited applies to the 4-class set; the 7-class set "
                          f"keeps excited as a class")
    root = require_root(NAME, root)
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
    evaluations = [f for s in sessions
                   for f in sorted((s / "dialog" / "EmoEvaluation").glob("*.txt"))
                   if not f.name.startswith("._")]
    if not evaluations:
        raise CorpusError(f"{NAME}: no Session*/dialog/EmoEvaluation/*.txt files under {root}")
    if classes == 7:
        mapping, labels = _SEVEN, SEVEN_CLASSES
    else:
        merge = merge_excited is None or merge_excited
        mapping, labels = (dict(_FOUR, exc="happy") if merge else _FOUR), FOUR_CLASSES
    utterances = []
    for evaluation in evaluations:
        session_dir = evaluation.parents[2]
        transcripts = _read_transcripts(session_dir / "dialog" / "transcriptions"
                                        / evaluation.name)
        for line_no, fields in _summary_lines(evaluation):
            start, end, utt_id, code, vad = fields
            label = mapping.get(code)
            session, gender, dialog = _parse_id(utt_id, evaluation, line_no)
            if label is None or (improvised_only and "_impro" not in dialog):
                continue
            wav = find_file(session_dir / "sentences" / "wav" / dialog / f"{utt_id}.wav")
            if not wav.is_file():
                raise line_error(evaluation, line_no, f"audio of {utt_id} not found at {wav}")
            utterances.append(Utterance(
                id=utt_id, path=wav, label=label, speaker=session + gender, session=session,
                gender=gender, valence=vad[0], arousal=vad[1], dominance=vad[2],
                transcript=transcripts.get(utt_id),
                words=read_wdseg(session_dir / "sentences" / "ForcedAlignment" / dialog
                                 / f"{utt_id}.wdseg"),
                duration=end - start if end > start else None))
    if not utterances:
        raise no_audio(NAME, root, f"{classes}-class utterances listed in EmoEvaluation files")
    return Corpus(NAME, labels, tuple(utterances))


def _summary_lines(path: Path):
    """(line number, (start, end, utt id, code, (V, A, D))) of every summary line."""
    for line_no, line in numbered_lines(path):
        stripped = line.strip()
        if not stripped or stripped.startswith("%") or _ANNOTATOR.match(stripped):
            continue
        if not stripped.startswith("["):
            raise line_error(path, line_no, f"unknown line {stripped[:60]!r}")
        match = _SUMMARY.match(line.rstrip())
        if match is None:
            raise line_error(path, line_no, "malformed summary line, expected "
                             f"'[start - end]<TAB>utt<TAB>emo<TAB>[V, A, D]', got {line[:80]!r}")
        start, end, utt_id, code, v, a, d = match.groups()
        if code not in CODES:
            raise line_error(path, line_no, f"unknown emotion code {code!r}; "
                             f"known: {sorted(CODES)}")
        yield line_no, (float(start), float(end), utt_id, code, (float(v), float(a), float(d)))


def _parse_id(utt_id: str, path: Path, line_no: int) -> tuple[str, str, str]:
    """(session, speaker gender, dialog) of an utterance id."""
    match = _UTT_ID.match(utt_id)
    if match is None:
        raise line_error(path, line_no, f"malformed utterance id {utt_id!r}, "
                         "expected like 'Ses01F_impro01_F000'")
    return match.group(1), match.group(4), utt_id.rsplit("_", 1)[0]


def _read_transcripts(path: Path) -> dict[str, str]:
    """utt id -> text from a dialog's transcription file ({} when the file is absent)."""
    if not path.is_file():
        return {}
    texts = {}
    for line_no, line in numbered_lines(path):
        if not line.strip():
            continue
        match = _TRANSCRIPT.match(line.strip())
        if match is None:
            raise line_error(path, line_no, "malformed transcription line, expected "
                             f"'utt [start-end]: text', got {line[:80]!r}")
        texts[match.group(1)] = match.group(2).strip()
    return texts


def read_wdseg(path: Path) -> tuple[WordTiming, ...]:
    """Word timings of a ``.wdseg`` forced alignment (() when the file is absent).

    Columns ``SFrm EFrm SegAScr Word`` in 10 ms frames (end frame inclusive) after a header
    line, then a ``Total Energy`` line. ``WORD(2)`` variants become ``WORD``; tokens such as
    ``<s>`` and ``<sil>`` are kept.
    """
    if not path.is_file():
        return ()
    words = []
    for line_no, line in numbered_lines(path):
        fields = line.split()
        if not fields or fields[0] == "SFrm" or line.strip().startswith("Total Energy"):
            continue
        if len(fields) != 4:
            raise line_error(path, line_no, f"expected 4 columns 'SFrm EFrm SegAScr Word', "
                             f"got {line.strip()!r}")
        try:
            first, last, _score = int(fields[0]), int(fields[1]), int(fields[2])
        except ValueError:
            raise line_error(path, line_no, f"frame numbers and score must be integers, "
                             f"got {line.strip()!r}") from None
        if first < 0 or last < first:
            raise line_error(path, line_no, f"needs 0 <= SFrm <= EFrm, got {first}, {last}")
        words.append(WordTiming(_VARIANT.sub("", fields[3]), first / FRAMES_PER_SECOND,
                                (last + 1) / FRAMES_PER_SECOND))
    return tuple(words)
