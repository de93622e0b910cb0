"""Manifests: one utterance a row, in CSV or JSON lines, the way most SER tools and projects
describe their data (a folder of audio files plus a spreadsheet).

Fields (names are case-insensitive; the names other tools use are accepted as aliases, in
brackets; other columns are ignored):

- ``path``: the audio file, relative to the manifest's folder (or absolute) [file, wav, audio,
  filename]. Required.
- ``speaker``: the speaker id [spk, speaker_id, spk_id, spkrid]. Required: every protocol keeps
  each speaker in one part (train, validation or test).
- ``label``: the emotion class [emotion, emo, emoclass, category]. Empty (null) where the
  utterance has only affect values; a manifest without a label column is regression-only.
- ``id``: the utterance id [key, utt_id, utterance_id]; default: ``path`` as written, without
  its extension (segments of one file need ids of their own).
- ``session`` (default: the speaker), ``gender`` (F/M or female/male; empty: unknown) [sex].
- ``valence``, ``arousal``, ``dominance``: numbers on the corpus' own scale [emoval, emoact,
  emodom: MSP-Podcast's names].
- ``transcript`` [text, transcription]; ``words``: word timings in seconds from the
  utterance's start, inline (JSON ``[[word, start, end], ...]``) or a ``.wdseg`` / JSON file
  relative to the manifest.
- ``start``, ``end``: the segment [start, end) seconds of a longer recording [start_time,
  end_time]; ``duration`` [length] and ``emotion_span`` ([start, end], JSON) as fastser
  writes them.

Formats, by extension: ``.csv`` (comma, semicolon or tab separated: the header tells), ``.tsv``,
``.jsonl`` (one JSON object a line) and ``.json`` (a list of objects, or an object of id ->
record as SpeechBrain and EmoBox write it; ``{data_root}`` in a path stands for the
manifest's folder). The class order is the order in which labels first appear (``--labels``
fixes another).

Every mistake is a :class:`~fastser.errors.CorpusError` naming the file and the row (the line
number): a missing column or field, missing audio, a duplicate id, a malformed value.

:func:`manifest_audio` reads the same files for inference (``fastser predict``, ``embed``):
only the audio path is required there, and audio is not looked for until it is read.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastser.audio.alignment import WordTiming
from fastser.data._files import line_error, read_text, require_file
from fastser.data.corpus import AFFECT, Corpus, Utterance
from fastser.data.iemocap import read_wdseg
from fastser.errors import CorpusError, PathExistsError, UserError

#: Field -> the column names that give it (the first is fastser's own name).
FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "key", "utt_id", "utterance_id"),
    "path": ("path", "file", "wav", "audio", "filename"),
    "label": ("label", "emotion", "emo", "emoclass", "category"),
    "speaker": ("speaker", "spk", "speaker_id", "spk_id", "spkrid"),
    "session": ("session",),
    "gender": ("gender", "sex"),
    "valence": ("valence", "emoval"),
    "arousal": ("arousal", "emoact"),
    "dominance": ("dominance", "emodom"),
    "transcript": ("transcript", "text", "transcription"),
    "words": ("words",),
    "start": ("start", "start_time"),
    "end": ("end", "end_time"),
    "duration": ("duration", "length"),
    "emotion_span": ("emotion_span",),
}
FORMATS = (".csv", ".tsv", ".jsonl", ".json")
WRITE_FORMATS = (".csv", ".tsv", ".jsonl")
_GENDERS = {"f": "F", "female": "F", "m": "M", "male": "M"}
_DATA_ROOT = "{data_root}"


def read_manifest(path: str | Path) -> Corpus:
    """The corpus a manifest file describes (see the module docstring); its name is the
    manifest's path."""
    path = _manifest_file(path)
    folder = path.parent.resolve()
    utterances, rows, labels = [], {}, {}
    for row, record in _records(path, required=("path", "speaker")):
        error = functools.partial(_row_error, path, row)
        utterance = _utterance(record, folder, error)
        if utterance.id in rows:
            raise error(f"duplicate utterance id {utterance.id!r} (also row "
                        f"{rows[utterance.id]}); give every row an id of its own (an 'id' "
                        "column), e.g. for segments of one recording")
        rows[utterance.id] = row
        if utterance.label is not None:
            labels.setdefault(utterance.label, None)
        utterances.append(utterance)
    if not utterances:
        raise CorpusError(f"{path}: the manifest lists no utterance")
    return Corpus(str(path), tuple(labels), tuple(utterances))


def manifest_audio(path: str | Path) -> list[tuple[str, Path, float | None, float | None]]:
    """The recordings a manifest lists, for inference: (id, audio file, start, end) of every
    row. Only the audio path is required; the id defaults as in :func:`read_manifest`;
    start/end (seconds) bound a part of a longer recording. The audio files need not exist
    (a missing one fails when it is read)."""
    path = _manifest_file(path)
    folder = path.parent.resolve()
    found = []
    for row, record in _records(path, required=("path",)):
        error = functools.partial(_row_error, path, row)
        written = _text(record, "path", error, required=True)
        start, end = _number(record, "start", error), _number(record, "end", error)
        if start is not None and start < 0:
            raise error(f"start must be a time >= 0 s, got {start}")
        if end is not None and not end > (start or 0.0):
            raise error(f"end ({end}) must be after start ({start or 0.0})")
        found.append((_text(record, "id", error) or os.path.splitext(written)[0],
                      _audio_path(written, folder), start, end))
    if not found:
        raise CorpusError(f"{path}: the manifest lists no recordings")
    return found


def _manifest_file(path: str | Path) -> Path:
    path = require_file("manifest", path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"manifest {path}: unknown format {path.suffix!r}; use one of "
                        f"{', '.join(FORMATS)}")
    return path


def _row_error(path: Path, row: int, message: str) -> CorpusError:
    """The error of a row: ``FILE:LINE: message``, or ``FILE: record N: message`` for the
    records of a .json manifest."""
    if path.suffix.lower() == ".json":
        return CorpusError(f"{path}: record {row}: {message}")
    return line_error(path, row, message)


# -- rows --------------------------------------------------------------------------------------

def _records(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, raw record) of every row: strings (CSV) or JSON values; a CSV header
    must name the ``required`` fields (a JSON record's are checked with its values)."""
    suffix = path.suffix.lower()
    text = read_text(path)
    if suffix in (".csv", ".tsv"):
        yield from _csv_records(path, text, "\t" if suffix == ".tsv" else None, required)
    elif suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield number, _json_object(path, number, line)
    else:
        yield from _json_records(path, text)


def _csv_records(path: Path, text: str, delimiter: str | None, required: tuple[str, ...]):
    header_line = text.split("\n", 1)[0]
    if not header_line.strip():
        raise line_error(path, 1, "expected a header row naming the columns (path, label, "
                         "speaker, ...)")
    if delimiter is None:
        counts = {d: header_line.count(d) for d in (",", ";", "\t")}
        delimiter = max(counts, key=counts.get)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [name.strip() for name in next(reader)]
    columns = _columns(header, lambda message: line_error(path, 1, message))
    for name in required:
        if name not in columns:
            raise line_error(path, 1, f"no {name} column (named one of "
                             f"{', '.join(FIELDS[name])}); the header is {header}")
    start = reader.line_num
    for cells in reader:
        number, start = start + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise line_error(path, number, f"{len(cells)} cells, the header has {len(header)} "
                             "columns")
        yield number, {name: cells[index].strip() or None for name, index in columns.items()}


def _columns(names: list[str], error) -> dict[str, int]:
    """Field -> the index of the name (of a header or a record's keys) that gives it; two
    names for one field are an error."""
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        for field, aliases in FIELDS.items():
            if name.strip().lower() in aliases:
                if field in columns:
                    raise error(f"two columns give the {field}: {names[columns[field]]!r} "
                                f"and {name!r}")
                columns[field] = index
    return columns


def _json_object(path: Path, number: int, text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise line_error(path, number, f"not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise line_error(path, number, f"expected a JSON object, got {type(record).__name__}")
    return _json_fields(record, lambda message: line_error(path, number, message))


def _json_fields(record: dict[str, Any], error) -> dict[str, Any]:
    keys = list(record)
    columns = _columns(keys, error)
    return {field: record[keys[index]] for field, index in columns.items()}


def _json_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a .json manifest: a list of objects, or an object of id -> record (numbered
    from 1 in file order)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise line_error(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    if isinstance(document, dict):
        items = [({"id": key, **value} if isinstance(value, dict) else value)
                 for key, value in document.items()]
    elif isinstance(document, list):
        items = document
    else:
        raise CorpusError(f"{path}: expected a list of records or an object of id -> record")
    for number, record in enumerate(items, start=1):
        error = functools.partial(_row_error, path, number)
        if not isinstance(record, dict):
            raise error(f"expected a JSON object, got {type(record).__name__}")
        yield number, _json_fields(record, error)


# -- values ------------------------------------------------------------------------------------

def _utterance(record: dict[str, Any], folder: Path, error) -> Utterance:
    """The utterance of one raw record (``error(message)``: the row's CorpusError)."""
    raw_path = _text(record, "path", error, required=True)
    audio = _audio_path(raw_path, folder)
    if not audio.is_file():
        raise error(f"audio file {raw_path!r} not found ({audio})")
    values = {name: _number(record, name, error) for name in (*AFFECT, "start", "end",
                                                             "duration")}
    label = _text(record, "label", error)
    if label is None and all(values[name] is None for name in AFFECT):
        raise error("no label and no affect value (valence, arousal, dominance): nothing to "
                    "learn from this utterance")
    speaker = _text(record, "speaker", error, required=True)
    utterance_id = _text(record, "id", error) or os.path.splitext(raw_path)[0]
    try:
        return Utterance(
            id=utterance_id, path=audio, label=label, speaker=speaker,
            session=_text(record, "session", error) or speaker,
            gender=_gender(record, error), transcript=_text(record, "transcript", error),
            words=_words(record.get("words"), folder, error),
            emotion_span=_span(record.get("emotion_span"), error), **values)
    except CorpusError as exc:
        raise error(str(exc).split(": ", 1)[-1]) from None


def _audio_path(written: str, folder: Path) -> Path:
    """The audio file a row names: relative to the manifest's ``folder`` (or absolute;
    ``{data_root}`` stands for the folder)."""
    audio = Path(written.replace(_DATA_ROOT, str(folder))).expanduser()
    return Path(os.path.normpath(folder / audio))


def _text(record: dict[str, Any], name: str, error, *, required: bool = False) -> str | None:
    value = record.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "path":
        value = str(value)  # numeric speaker or session ids in JSON
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise error(f"no {name} (a field named one of {', '.join(FIELDS[name])})")
        return None
    if not isinstance(value, str):
        raise error(f"{name} must be text, got {value!r}")
    return value.strip()


def _number(record: dict[str, Any], name: str, error) -> float | None:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise error(f"{name} must be a finite number, got {value!r}")
    return number


def _gender(record: dict[str, Any], error) -> str | None:
    value = _text(record, "gender", error)
    if value is None:
        return None
    if value.lower() not in _GENDERS:
        raise error(f"gender must be F, M, female or male (or empty), got {value!r}")
    return _GENDERS[value.lower()]


def _span(value: Any, error) -> tuple[float, float] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = _parse_json(value, "emotion_span", error)
    if not (isinstance(value, list) and len(value) == 2):
        raise error(f"emotion_span must be [start, end], got {value!r}")
    return tuple(_number({"emotion_span": v}, "emotion_span", error) for v in value)


def _words(value: Any, folder: Path, error) -> tuple[WordTiming, ...]:
    """Inline word timings ([[word, start, end], ...], JSON text in a CSV cell) or the file
    named by a path relative to the manifest."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = _parse_json(value, "words", error)
    if isinstance(value, str):
        file = folder / value
        if not file.is_file():
            raise error(f"word timings file {value!r} not found ({file})")
        return read_word_timings(file)
    return _word_list(value, error)


def _parse_json(text: str, name: str, error) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{name} is not valid JSON ({exc.msg}): {text[:60]!r}") from None


def _word_list(value: Any, error) -> tuple[WordTiming, ...]:
    if not isinstance(value, list):
        raise error(f"words must be a list of [word, start, end], got {value!r}")
    words = []
    for entry in value:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            raise error(f"words must be a list of [word, start, end], got the entry {entry!r}")
        start, end = (_number({"t": t}, "t", error) for t in entry[1:])
        if start is None or end is None or not 0 <= start <= end:
            raise error(f"word {entry[0]!r} needs times 0 <= start <= end, got {entry[1:]}")
        words.append(WordTiming(entry[0], start, end))
    return tuple(words)


def read_word_timings(path: str | Path) -> tuple[WordTiming, ...]:
    """Word timings from an IEMOCAP ``.wdseg`` file or a JSON list of [word, start, end]
    (seconds)."""
    path = require_file("word timings file", path)
    if path.suffix.lower() == ".wdseg":
        return read_wdseg(path)
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise line_error(path, exc.lineno, "neither a .wdseg file nor a JSON list of [word, "
                         f"start, end] ({exc.msg})") from None
    return _word_list(value, lambda message: CorpusError(f"{path}: {message}"))


# -- writing -----------------------------------------------------------------------------------

def manifest_record(utterance: Utterance, folder: Path) -> dict[str, Any]:
    """The fields of ``utterance`` that are set, as JSON values, with its audio path relative
    to ``folder`` (the manifest's)."""
    audio = Path(os.path.relpath(os.path.abspath(utterance.path), os.path.abspath(folder)))
    record: dict[str, Any] = {
        "id": utterance.id, "path": audio.as_posix(), "label": utterance.label,
        "speaker": utterance.speaker, "session": utterance.session, "gender": utterance.gender,
        "valence": utterance.valence, "arousal": utterance.arousal,
        "dominance": utterance.dominance, "transcript": utterance.transcript,
        "words": [[w.word, w.start, w.end] for w in utterance.words] or None,
        "start": utterance.start, "end": utterance.end, "duration": utterance.duration,
        "emotion_span": list(utterance.emotion_span) if utterance.emotion_span else None,
    }
    return {key: value for key, value in record.items() if value is not None}


def write_manifest(corpus: Corpus, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``corpus`` as a manifest (``.jsonl``, ``.csv`` or ``.tsv``, by extension) that
    :func:`read_manifest` reads back to the same utterances; audio paths are written relative
    to the manifest's folder. The file appears whole (written aside, then renamed)."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise UserError(f"manifest {path}: unknown format {path.suffix!r}; write one of "
                        f"{', '.join(WRITE_FORMATS)}")
    if path.exists() and not overwrite:
        raise PathExistsError(f"{path} exists; choose another file (nothing was overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [manifest_record(u, path.parent) for u in corpus]
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = _csv_text(records, "\t" if suffix == ".tsv" else ",")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _csv_text(records: list[dict[str, Any]], delimiter: str) -> str:
    columns = [name for name in FIELDS if any(name in r for r in records)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_cell(record.get(name)) for name in columns])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return repr(value) if isinstance(value, float) else str(value)

