"""The class set of a corpus as the user chooses it: ``--label-map`` (merge or rename classes)
then ``--labels`` (select classes, in the class order given). One place, applied by
:func:`fastser.data.sources.open_corpus` to every source.

A label map is inline pairs (``excited=happy,frustrated=angry``: the labels it names are
renamed, the others kept) or a JSON file of old -> new names (EmoBox's ``label_map.json``);
a map read from a file names every label (a label it leaves out is an error), as EmoBox's are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastser.data._files import read_text
from fastser.data.corpus import Corpus
from fastser.errors import CorpusError, UserError


@dataclass(frozen=True)
class LabelMap:
    """old label -> new label; ``complete``: every label of the corpus must be named."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    complete: bool = False
    origin: str = "--label-map"

    def to_dict(self) -> dict[str, Any]:
        return {"mapping": dict(self.mapping), "complete": self.complete,
                "origin": self.origin}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> "LabelMap":
        return cls(dict(state["mapping"]), bool(state["complete"]), str(state["origin"]))


def parse_labels(text: str) -> tuple[str, ...]:
    """``"neutral,happy,sad,angry"`` -> the class names, in that order."""
    labels = tuple(name.strip() for name in text.split(","))
    if not text.strip() or any(not name for name in labels):
        raise UserError(f"--labels expects class names separated by commas, got {text!r}")
    if len(set(labels)) != len(labels):
        raise UserError(f"--labels names a class twice: {text!r}")
    return labels


def parse_label_map(text: str) -> LabelMap:
    """``"excited=happy,fru=angry"`` (inline pairs) or the path of a JSON file of old -> new
    names."""
    if "=" not in text:
        return read_label_map(text)
    mapping = {}
    for pair in text.split(","):
        old, sep, new = (part.strip() for part in pair.partition("="))
        if not sep or not old or not new:
            raise UserError(f"--label-map expects OLD=NEW pairs separated by commas (or a JSON "
                            f"file), got {pair!r} in {text!r}")
        if old in mapping:
            raise UserError(f"--label-map maps {old!r} twice in {text!r}")
        mapping[old] = new
    return LabelMap(mapping)


def read_label_map(path: str | Path) -> LabelMap:
    """A JSON object of old -> new label names (EmoBox's ``label_map.json``)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--label-map: {path} is neither OLD=NEW pairs nor a JSON file that "
                        "exists")
    try:
        mapping = json.loads(read_text(file))
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(mapping, dict) or not all(
            isinstance(v, str) and v for v in mapping.values()):
        raise CorpusError(f"{file}: a label map is a JSON object of old -> new label names")
    return LabelMap({str(k): v for k, v in mapping.items()}, complete=True, origin=str(file))


def apply_labels(corpus: Corpus, labels: Sequence[str] | None = None,
                 label_map: LabelMap | Mapping[str, str] | None = None) -> Corpus:
    """``corpus`` with ``label_map`` applied, then only the classes ``labels`` (in that
    order) kept."""
    if label_map is not None:
        if not isinstance(label_map, LabelMap):
            label_map = LabelMap(dict(label_map))
        if label_map.complete:
            _check_complete(corpus, label_map)
            mapping = {old: new for old, new in label_map.mapping.items()
                       if old in corpus.labels}
        else:
            mapping = dict(label_map.mapping)
        corpus = corpus.relabel(mapping)
    if labels is not None:
        corpus = corpus.select_labels(list(labels))
    return corpus


def _check_complete(corpus: Corpus, label_map: LabelMap) -> None:
    for utterance in corpus:
        if utterance.label is not None and utterance.label not in label_map.mapping:
            raise CorpusError(f"{corpus.name}: utterance {utterance.id!r} has label "
                              f"{utterance.label!r}, which the label map {label_map.origin} "
                              f"does not name; it maps {sorted(label_map.mapping)}")
