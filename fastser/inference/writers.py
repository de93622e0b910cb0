"""Where bulk results go: prediction tables (CSV or JSONL; one row per recording and, with
segments, one per segment), the JSON and text of the terminal, and embedding folders (.npy
arrays with CSV indexes).

Files are written under a temporary name (``<name>.partial``) and renamed when the run ends,
so a finished file is complete and an interrupted run leaves its partial results under a
name that says so. Rows of recordings that could not be processed carry the ``error``;
``warning`` notes clipped or near-silent audio.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from fastser.errors import NotAFolderError, PathExistsError, UserError
from fastser.inference.bulk import FileResult
from fastser.inference.recognizer import Embedding, Recognition

TABLE_SUFFIXES = (".csv", ".jsonl")


def check_output(path: Path, *, force: bool, folder: bool = False) -> None:
    """PathExistsError for an existing output (unless ``force``); the wrong kind of path."""
    if folder and path.exists() and not path.is_dir():
        raise NotAFolderError(f"{path} is a file; the output is a folder")
    if path.exists() and not force and (not folder or any(path.iterdir())):
        raise PathExistsError(f"{path} exists; pass --force to replace it")


class PredictionTable:
    """A CSV or JSONL file of predictions (by the suffix of ``path``).

    CSV: columns ``id, path, segment, start, end, seconds, label, score_<label>...,
    <dimension>... (the model's affect targets), error, warning``; a recording's row has an
    empty ``segment``, then (``segments``) one row per segment, numbered from 0, with its span
    in seconds.  JSONL: one object per recording (``id, path, seconds, label, scores, affect,
    error, warning`` and, with ``segments``, the list ``segments`` of ``{start, end, label,
    scores}``)."""

    def __init__(self, path: str | Path, labels: Sequence[str], *, segments: bool = False,
                 force: bool = False, affect: Sequence[str] = ()) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in TABLE_SUFFIXES:
            raise UserError(f"--out {self.path}: the prediction file must end in "
                            f"{' or '.join(TABLE_SUFFIXES)}")
        check_output(self.path, force=force)
        self.labels, self.segments, self.affect = list(labels), segments, list(affect)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file: IO[str] = open(self.partial, "w", newline="", encoding="utf-8")
        self.csv = None
        if self.path.suffix.lower() == ".csv":
            columns = ["id", "path", "segment", "start", "end", "seconds", "label",
                       *(f"score_{label}" for label in self.labels), *self.affect, "error",
                       "warning"]
            self.csv = csv.DictWriter(self.file, columns)
            self.csv.writeheader()

    def write(self, result: FileResult) -> None:
        if self.csv is None:
            self.file.write(json.dumps(_json_row(result, self.segments)) + "\n")
            return
        row = {"id": result.input.id, "path": str(result.input.path), "seconds": result.seconds,
               "error": result.error, "warning": "; ".join(result.warnings) or None}
        value = result.value
        if not isinstance(value, Recognition):
            self.csv.writerow(row)
            return
        self.csv.writerow({**row, "start": 0.0, "end": result.seconds,
                           **self._scored(value.label, value.scores), **value.affect})
        if self.segments:
            for number, segment in enumerate(value.segments):
                self.csv.writerow({"id": row["id"], "path": row["path"], "segment": number,
                                   "start": segment.start, "end": segment.end,
                                   **self._scored(segment.label, segment.scores)})

    def _scored(self, label: str, scores: dict[str, float]) -> dict[str, Any]:
        return {"label": label, **{f"score_{k}": v for k, v in scores.items()}}

    def close(self) -> None:
        self.file.close()
        os.replace(self.partial, self.path)


def _json_row(result: FileResult, segments: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"id": result.input.id, "path": str(result.input.path),
                           "seconds": result.seconds}
    if isinstance(result.value, Recognition):
        row.update(label=result.value.label, scores=result.value.scores,
                   affect=result.value.affect)
        if segments:
            row["segments"] = [vars(s) for s in result.value.segments]
    row.update(error=result.error, warning="; ".join(result.warnings) or None)
    return row


class TerminalPredictions:
    """Predictions on standard output: one line per recording (and its segments), or with
    ``as_json`` one JSON object keyed by recording id at the end."""

    def __init__(self, *, as_json: bool = False, stream: IO[str] | None = None) -> None:
        self.as_json, self.stream = as_json, stream or sys.stdout
        self.results: dict[str, Any] = {}

    def write(self, result: FileResult) -> None:
        value = result.value
        if self.as_json:
            self.results[result.input.id] = (value.to_dict() if isinstance(value, Recognition)
                                             else {"error": result.error})
            return
        if not isinstance(value, Recognition):
            print(f"{result.input.id}: error: {result.error}", file=self.stream)
            return
        scores = ", ".join(f"{k} {v:.2f}" for k, v in
                           sorted(value.scores.items(), key=lambda kv: -kv[1]))
        affect = ", ".join(f"{k} {v:.2f}" for k, v in value.affect.items())
        print(f"{result.input.id}: " + "; ".join(part for part in (
            f"{value.label} ({scores})" if value.label else "", affect) if part),
            file=self.stream)
        for seg in value.segments:
            print(f"  {seg.start:6.2f}-{seg.end:6.2f} s  {seg.label:<10} "
                  f"{seg.scores[seg.label]:.2f}", file=self.stream)

    def close(self) -> None:
        if self.as_json:
            print(json.dumps(self.results, indent=2), file=self.stream)


class EmbeddingFolder:
    """Embeddings in a folder: ``utterances.npy`` (N, E) float32 with ``index.csv`` (``id,
    path, seconds, row, error, warning``; ``row`` indexes the array, empty for a recording
    that could not be processed); with ``segments`` / ``frames`` also ``segments.npy`` /
    ``frames.npy`` with ``segments.csv`` / ``frames.csv`` (``id, number, start, end, row``).
    Written into ``<folder>.partial`` and renamed at the end."""

    def __init__(self, folder: str | Path, *, segments: bool = False, frames: bool = False,
                 force: bool = False) -> None:
        self.folder = Path(folder)
        check_output(self.folder, force=force, folder=True)
        self.partial = self.folder.with_name(self.folder.name + ".partial")
        self.parts = {"segments": segments, "frames": frames}
        self.index: list[dict[str, Any]] = []
        self.arrays: dict[str, list[np.ndarray]] = {"utterances": [], "segments": [],
                                                    "frames": []}
        self.spans: dict[str, list[dict[str, Any]]] = {"segments": [], "frames": []}

    def check(self, parts: set[str]) -> None:
        """UserError when the model gives none of a part (``segments``, ``frames``) the folder
        was asked for."""
        for part, wanted in self.parts.items():
            if wanted and part not in parts:
                raise UserError(f"--{part}: this model gives no {part[:-1]} embeddings")

    def write(self, result: FileResult) -> None:
        row: dict[str, Any] = {"id": result.input.id, "path": str(result.input.path),
                               "seconds": result.seconds, "row": None, "error": result.error,
                               "warning": "; ".join(result.warnings) or None}
        value = result.value
        if isinstance(value, Embedding):
            row["row"] = len(self.arrays["utterances"])
            self.arrays["utterances"].append(value.utterance.numpy()[None])
            for part, wanted in self.parts.items():
                if wanted:
                    self._add_part(part, result.input.id, getattr(value, part),
                                   getattr(value, part[:-1] + "_spans"))
        self.index.append(row)

    def _add_part(self, part: str, ident: str, rows, spans) -> None:
        first = sum(len(a) for a in self.arrays[part])
        self.arrays[part].append(rows.numpy())
        self.spans[part] += [{"id": ident, "number": k, "start": start, "end": end,
                              "row": first + k} for k, (start, end) in enumerate(spans)]

    def close(self) -> None:
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        _save(self.partial / "utterances.npy", self.arrays["utterances"])
        _write_csv(self.partial / "index.csv", self.index,
                   ["id", "path", "seconds", "row", "error", "warning"])
        for part, wanted in self.parts.items():
            if wanted:
                _save(self.partial / f"{part}.npy", self.arrays[part])
                _write_csv(self.partial / f"{part}.csv", self.spans[part],
                           ["id", "number", "start", "end", "row"])
        if self.folder.exists():
            shutil.rmtree(self.folder)
        os.replace(self.partial, self.folder)


def _save(path: Path, arrays: list[np.ndarray]) -> None:
    np.save(path, np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32))


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
