"""The recordings a bulk command runs over, from what the user names: audio files, folders
(searched recursively for audio file extensions, case-insensitive), manifests (the formats of
:mod:`fastser.data.manifest`: one recording a row) and Kaldi ``wav.scp`` files (``ID PATH``
lines), expanded in
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
convention). Manifests are read by :func:`fastser.data.manifest.manifest_audio` (the columns
and aliases of training manifests; only the audio path is required here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from fastser.audio.io import SAMPLE_RATE, load_audio
from fastser.data._files import line_error, numbered_lines
from fastser.data.manifest import FORMATS as MANIFEST_SUFFIXES
from fastser.data.manifest import manifest_audio
from fastser.errors import CorpusError, MissingPathError, UserError

#: Extensions of the audio files a folder is searched for (what libsndfile decodes).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf")


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
    """A manifest: one recording a row (:func:`fastser.data.manifest.manifest_audio`)."""
    return [AudioInput(*row) for row in manifest_audio(path)]


def read_input(item: AudioInput) -> torch.Tensor:
    """The recording's audio, mono float32 (N,) at 16 kHz (its part from start to end, when
    given); AudioError (or MissingPathError) for audio that cannot be used."""
    return load_audio(item.path, SAMPLE_RATE, start=item.start, end=item.end)
