"""Official folds: a benchmark's own train/test lists instead of fastser's generated splits.

Two formats:

- EmoBox's (``data/<dataset>/`` of its repository): a folder with one ``fold_<k>/`` folder per
  fold holding ``<dataset>_train_fold_<k>.jsonl`` and ``<dataset>_test_fold_<k>.jsonl`` (and,
  where the benchmark has one, ``<dataset>_valid_fold_<k>.jsonl``), JSON lines of utterance
  records whose ``key`` is the utterance id; EmoBox writes keys as ``<dataset>-<id>``, so a key
  the corpus lacks also matches the corpus' ``<id>``.
- A CSV of utterance id -> fold (header ``id,fold``; the id column may have the manifest's
  aliases): fold k tests its utterances and trains on every other fold's.

Validation: the fold's own list where the file has one; otherwise ``validation_speakers``
speakers drawn (seeded, per fold, as the protocols of :mod:`fastser.data.protocols` draw them)
from the training speakers that are not test speakers, their training utterances moved to
validation; none when fewer than ``validation_speakers + 1`` such speakers are left (official
folds need not be speaker-independent). Ids of the fold file that the corpus lacks are left
out (:func:`unmatched_ids` lists them); corpus utterances no fold lists are not used.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastser.data._files import line_error, numbered_lines, read_text
from fastser.data.corpus import Corpus
from fastser.data.manifest import FIELDS
from fastser.data.protocols import Split
from fastser.errors import CorpusError, MissingPathError, UserError

_FOLD_DIR = re.compile(r"^fold_?(\d+)$")
_PARTS = {"train": "train", "test": "test", "valid": "validation"}


@dataclass(frozen=True)
class Fold:
    """One fold's utterance ids; ``validation`` None where the file gives no validation list;
    ``prefix``: a prefix of the ids the corpus' ids may lack (EmoBox's ``<dataset>-``)."""

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    validation: tuple[str, ...] | None = None
    prefix: str | None = None


def read_folds(path: str | Path) -> list[Fold]:
    """The folds of an EmoBox dataset folder or of an id,fold CSV."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingPathError(f"fold file {path} does not exist")
    if path.is_dir():
        return _read_emobox(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return _read_csv(path)
    raise UserError(f"folds {path}: expected an EmoBox dataset folder (fold_1/, fold_2/, ...) "
                    "or a CSV of id,fold")


def _read_emobox(folder: Path) -> list[Fold]:
    fold_dirs = sorted((int(m.group(1)), d) for d in folder.iterdir()
                       if d.is_dir() and (m := _FOLD_DIR.match(d.name)))
    if not fold_dirs:
        raise CorpusError(f"{folder}: no fold_<k>/ folders (EmoBox's data/<dataset>/ layout)")
    folds = []
    for number, directory in fold_dirs:
        parts, prefixes = {}, set()
        for file in sorted(directory.glob(f"*_fold_{number}.jsonl")):
            part = file.name[:-len(f"_fold_{number}.jsonl")].rsplit("_", 1)[-1]
            if part in _PARTS:
                parts[_PARTS[part]] = _emobox_ids(file, prefixes)
        for needed in ("train", "test"):
            if needed not in parts:
                raise CorpusError(f"{directory}: no *_{needed}_fold_{number}.jsonl file")
        prefix = prefixes.pop() if len(prefixes) == 1 else None
        folds.append(Fold(str(number), parts["train"], parts["test"], parts.get("validation"),
                          prefix))
    return folds


def _emobox_ids(file: Path, prefixes: set[str]) -> tuple[str, ...]:
    """The ``key`` of every record (the ``<dataset>-`` prefixes seen go to ``prefixes``)."""
    ids = []
    for number, line in numbered_lines(file):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise line_error(file, number, f"not valid JSON ({exc.msg})") from None
        key = record.get("key") if isinstance(record, dict) else None
        if not isinstance(key, str) or not key:
            raise line_error(file, number, "expected a JSON object with a 'key' (the utterance "
                             "id)")
        dataset = record.get("dataset")
        if isinstance(dataset, str) and key.startswith(f"{dataset}-"):
            prefixes.add(f"{dataset}-")
        ids.append(key)
    return tuple(ids)


def _read_csv(path: Path) -> list[Fold]:
    reader = csv.reader(io.StringIO(read_text(path)),
                        delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    header = [name.strip().lower() for name in next(reader, [])]
    id_column = next((i for i, name in enumerate(header) if name in FIELDS["id"]), None)
    if id_column is None or "fold" not in header:
        raise line_error(path, 1, f"expected a header with an id column (one of "
                         f"{', '.join(FIELDS['id'])}) and a fold column, got {header}")
    fold_column = header.index("fold")
    folds: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for cells in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise line_error(path, number, f"{len(cells)} cells, the header has {len(header)}")
        utterance, fold = cells[id_column].strip(), cells[fold_column].strip()
        if not utterance or not fold:
            raise line_error(path, number, "needs an utterance id and a fold")
        if utterance in seen:
            raise line_error(path, number, f"utterance {utterance!r} has a fold already (row "
                             f"{seen[utterance]})")
        seen[utterance] = number
        folds.setdefault(fold, []).append(utterance)
    if len(folds) < 2:
        raise CorpusError(f"{path}: needs at least 2 folds, got {sorted(folds)}")
    order = sorted(folds, key=lambda f: (0, int(f), f) if f.isdigit() else (1, 0, f))
    return [Fold(name, tuple(u for other in order if other != name for u in folds[other]),
                 tuple(folds[name])) for name in order]


def unmatched_ids(corpus: Corpus, folds: list[Fold]) -> list[str]:
    """Ids the fold file lists that ``corpus`` does not hold (left out of the splits)."""
    known = {u.id for u in corpus}
    return sorted({i for fold in folds for part in (fold.train, fold.test, fold.validation or ())
                   for i in part if _match(i, fold.prefix, known) is None})


def _match(utterance: str, prefix: str | None, known) -> str | None:
    if utterance in known:
        return utterance
    if prefix and utterance.startswith(prefix) and utterance[len(prefix):] in known:
        return utterance[len(prefix):]
    return None


def splits_from_folds(corpus: Corpus, folds: list[Fold], *, validation_speakers: int = 1,
                      seed: int = 0) -> list[Split]:
    """One :class:`Split` per fold (validation as the module docstring says)."""
    if not folds:
        raise CorpusError("no folds")
    by_id = {u.id: u for u in corpus}
    splits = []
    for index, fold in enumerate(folds):
        parts = {part: _matched(fold, part, by_id) for part in ("train", "test", "validation")}
        overlap = set(parts["train"]) & set(parts["test"])
        if overlap:
            raise CorpusError(f"fold {fold.name}: utterance {sorted(overlap)[0]!r} is in both "
                              "its train and test lists")
        for part in ("train", "test"):
            if not parts[part]:
                raise CorpusError(f"fold {fold.name}: none of its {len(getattr(fold, part))} "
                                  f"{part} ids is an utterance of {corpus.name!r} (ids like "
                                  f"{getattr(fold, part)[:1]}, the corpus' like "
                                  f"{[u.id for u in corpus][:1]})")
        if parts["validation"] is None:
            parts["train"], parts["validation"] = _draw_validation(
                [by_id[i] for i in parts["train"]], {by_id[i].speaker for i in parts["test"]},
                validation_speakers, np.random.default_rng([seed, index]))
        shared = ({by_id[i].speaker for i in parts["train"]}
                  & {by_id[i].speaker for i in parts["test"]})
        splits.append(Split(f"fold {fold.name}", *(
            Corpus(f"{corpus.name} {role}", corpus.labels, tuple(by_id[i] for i in parts[role]))
            for role in ("train", "validation", "test")), speaker_dependent=bool(shared)))
    return splits


def _matched(fold: Fold, part: str, by_id: dict) -> list[str] | None:
    """The corpus ids of a fold's part (None: the fold has no such list)."""
    ids = getattr(fold, part)
    if ids is None:
        return None
    return [m for i in ids if (m := _match(i, fold.prefix, by_id.keys())) is not None]


def _draw_validation(train, test_speakers: set[str], count: int,
                     rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(train ids, validation ids): ``count`` training speakers that are not test speakers
    drawn for validation, when that leaves one to train on; else no validation."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise UserError(f"folds: validation_speakers must be an int >= 0, got {count!r}")
    candidates = sorted({u.speaker for u in train} - test_speakers)
    if count == 0 or len(candidates) < count + 1:
        return [u.id for u in train], []
    chosen = {candidates[i] for i in rng.permutation(len(candidates))[:count]}
    return ([u.id for u in train if u.speaker not in chosen],
            [u.id for u in train if u.speaker in chosen])
