"""The recordings a bulk command runs over, from what the user names: audio files, folders
(searched recursively for audio file extensions, case-insensitive), manifests (``.csv`` or
``.jsonl``: one recording a row) and Kaldi ``wav.scp`` files (``ID PATH`` lines), expanded in
the order given into one list of :class:`AudioInput`.

- A named path that does not exist, an empty folder, an empty or malformed manifest or
  wav.scp (the error names the file and line), piped commands and archive offsets in a
  wav.scp, and an id listed twice are user errors, raised before any work.
- A recording listed by a manifest or wav.scp that is missing, or any file that cannot be
  decoded, is not: :func:`read_input` raises its :class:`~fastser.errors.AudioError` when the
  recording is read, so a bulk run reports it for that recording and carries on.

Ids: the path as named or found (files, folders), the wav.scp's utterance id, a manifest's
``id`` column (else its path as written, without the extension). Relative paths in a manifest
are relative to the manifest's folder; in a wav.scp relative to the current folder (Kaldi's
convention). Manifest columns are those of :mod:`fastser.data` manifests, case-insensitive,
with the same aliases; only the audio path is required here.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from fastser.audio.io import SAMPLE_RATE, load_audio
from fastser.data._files import line_error, numbered_lines
from fastser.errors import AudioError, CorpusError, MissingPathError, UserError

#: Extensions of the audio files a folder is searched for (what libsndfile decodes).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
#: Manifest field -> the column names that give it (case-insensitive), in order of preference.
MANIFEST_COLUMNS = {"path": ("path", "file", "wav", "audio", "filename"),
                    "id": ("id", "key", "utt_id", "utterance_id"),
                    "start": ("start", "start_time"), "end": ("end", "end_time")}


@dataclass(frozen=True)
class AudioInput:
    """One recording to process: its id (unique in a run), its audio file and, for a part of
    a longer recording (manifest ``start``/``end`` columns), the part's bounds in seconds."""

    id: str
    path: Path
    start: float | None = None
    end: float | None = None


def list_inputs(sources: Sequence[str | Path], *,
                extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[AudioInput]:
    """Every recording the ``sources`` name, in order (a folder's files sorted by path)."""
    suffixes = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    inputs: list[AudioInput] = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise MissingPathError(f"input not found: {source} (give audio files, folders, "
                                   f"manifests ({', '.join(MANIFEST_SUFFIXES)}) or wav.scp files)")
        if path.is_dir():
            inputs += folder_inputs(path, suffixes)
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            inputs += manifest_inputs(path)
        elif path.suffix.lower() == ".scp":
            inputs += wav_scp_inputs(path)
        else:
            inputs.append(AudioInput(str(source), path))
    seen: set[str] = set()
    for item in inputs:
        if item.id in seen:
            raise UserError(f"recording id {item.id!r} is listed twice; every input must be a "
                            "different recording")
        seen.add(item.id)
    return inputs


def folder_inputs(folder: Path, suffixes: Sequence[str] = AUDIO_EXTENSIONS) -> list[AudioInput]:
    """The audio files under ``folder`` (recursively; extensions case-insensitive; hidden
    files and macOS ``._*`` metadata skipped), sorted by path."""
    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file())
    if not files:
        raise UserError(f"{folder}: no audio files ({', '.join(suffixes)}) in this folder or "
                        "its subfolders")
    return [AudioInput(str(p), p) for p in files]


def wav_scp_inputs(path: Path) -> list[AudioInput]:
    """Kaldi ``wav.scp``: ``UTTERANCE_ID PATH`` lines (blank lines skipped)."""
    inputs = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) < 2:
            raise line_error(path, number, f"expected 'ID PATH', got {line.strip()!r}")
        utterance, location = fields[0], fields[1].strip()
        if location.endswith("|"):
            raise line_error(path, number, f"{utterance}: piped commands ({location!r}) are "
                             "not run; write the command's audio to a file and list the file")
        if re.search(r"\.ark:\d+$", location):
            raise line_error(path, number, f"{utterance}: Kaldi archive offsets "
                             f"({location!r}) are not read; list audio files")
        inputs.append(AudioInput(utterance, Path(location)))
    if not inputs:
        raise CorpusError(f"{path}: the wav.scp lists no recordings")
    return inputs


def manifest_inputs(path: Path) -> list[AudioInput]:
    """A CSV or JSONL manifest: one recording a row, its audio in a ``path`` column (or an
    alias: :data:`MANIFEST_COLUMNS`); optional ``id`` and ``start``/``end`` (seconds)."""
    rows = _jsonl_rows(path) if path.suffix.lower() == ".jsonl" else _csv_rows(path)
    inputs = []
    for number, raw in rows:
        row = _fields(raw)
        if row.get("path") in (None, ""):
            raise line_error(path, number, "no audio path (a column path or one of "
                             f"{MANIFEST_COLUMNS['path'][1:]}); the row has {sorted(raw)}")
        written = str(row["path"])
        audio = Path(written) if Path(written).is_absolute() else path.parent / written
        start, end = (_seconds(path, number, row, key) for key in ("start", "end"))
        if start is not None and end is not None and not end > start:
            raise line_error(path, number, f"end ({end}) must be after start ({start})")
        ident = row.get("id")
        ident = str(Path(written).with_suffix("")) if ident in (None, "") else str(ident)
        inputs.append(AudioInput(ident, audio, start, end))
    if not inputs:
        raise CorpusError(f"{path}: the manifest lists no recordings")
    return inputs


def _fields(row: dict) -> dict:
    """The manifest fields of a row, by their fastser names (the first alias present)."""
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    return {field: next(lowered[c] for c in names if c in lowered)
            for field, names in MANIFEST_COLUMNS.items() if any(c in lowered for c in names)}


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    lines = [line for _, line in numbered_lines(path)]
    reader = csv.DictReader(lines)
    return [(reader.line_num, row) for row in reader]


def _jsonl_rows(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise line_error(path, number, f"not a JSON object: {error}") from None
        if not isinstance(row, dict):
            raise line_error(path, number, f"not a JSON object: {line.strip()[:60]!r}")
        rows.append((number, row))
    return rows


def _seconds(path: Path, number: int, row: dict, key: str) -> float | None:
    value = row.get(key)
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise line_error(path, number, f"{key} must be a number of seconds, got {value!r}") \
            from None
    if not seconds >= 0:
        raise line_error(path, number, f"{key} must be >= 0 seconds, got {value!r}")
    return seconds


def read_input(item: AudioInput) -> torch.Tensor:
    """The recording's audio, mono float32 (N,) at 16 kHz (its part from start to end, when
    given); AudioError (or MissingPathError) for audio that cannot be used."""
    waveform = load_audio(item.path, SAMPLE_RATE)
    if item.start is None and item.end is None:
        return waveform
    first = round((item.start or 0.0) * SAMPLE_RATE)
    last = waveform.shape[0] if item.end is None else round(item.end * SAMPLE_RATE)
    if first >= waveform.shape[0]:
        raise AudioError(f"{item.path}: start {item.start} s is past the end of the audio "
                         f"({waveform.shape[0] / SAMPLE_RATE:.3f} s)")
    return waveform[first:last]
