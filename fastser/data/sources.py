"""Open a corpus from a source string: ``synthetic`` (generated and cached),
``synthetic:PATH`` (a folder written by ``fastser synth``), ``manifest:FILE`` (a CSV or JSON
lines manifest, :mod:`fastser.data.manifest`), ``iemocap:PATH``, ``crema-d:PATH``,
``ravdess:PATH`` or ``emodb:PATH``; with the user's class set (:mod:`fastser.data.labels`)
applied to any of them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields

from fastser.data.corpus import Corpus
from fastser.data.crema_d import read_crema_d
from fastser.data.emodb import read_emodb
from fastser.data.iemocap import read_iemocap
from fastser.data.labels import LabelMap, apply_labels
from fastser.data.manifest import read_manifest
from fastser.data.ravdess import read_ravdess
from fastser.data.synthetic import SyntheticConfig, load_synthetic, read_synthetic
from fastser.errors import UserError

READERS: dict[str, Callable[..., Corpus]] = {
    "manifest": read_manifest, "iemocap": read_iemocap, "crema-d": read_crema_d,
    "ravdess": read_ravdess, "emodb": read_emodb,
}
SOURCES = ("synthetic", *READERS)


def reader_options(name: str) -> list[str]:
    """The options the reader of corpus ``name`` takes (its keyword arguments)."""
    reader = load_synthetic if name == "synthetic" else READERS[name]
    params = list(inspect.signature(reader).parameters.values())[1:]
    names = [p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    if name == "synthetic":
        names += [f.name for f in fields(SyntheticConfig)]
    return sorted(names)


def open_corpus(source: str, *, labels: Sequence[str] | None = None,
                label_map: LabelMap | Mapping[str, str] | None = None, **options) -> Corpus:
    """The corpus named by ``source``, with ``label_map`` (merge or rename classes) then
    ``labels`` (the classes kept, in that order) applied; ``options`` go to its reader (e.g.
    ``four_class=True`` for CREMA-D, ``improvised_only=True`` or ``classes=7`` for IEMOCAP,
    ``utterances=40`` for synthetic; an option the reader does not take is a UserError listing
    those it takes)."""
    return apply_labels(_read(source, options), labels, label_map)


def _read(source: str, options: dict) -> Corpus:
    if not isinstance(source, str) or not source:
        raise UserError(f"corpus source must be a non-empty string, got {source!r}")
    name, sep, path = source.partition(":")
    name = name.strip().lower()
    if name == "synthetic":
        if path.strip():  # a folder written by write_synthetic / `fastser synth`
            if options:
                raise UserError(f"corpus source {source!r}: a written synthetic corpus takes "
                                 f"no options, got {sorted(options)}")
            return read_synthetic(path.strip())
        _check_options(name, options)
        return load_synthetic(**options)
    if name not in READERS:
        raise UserError(f"unknown corpus {name!r} in source {source!r}; known: "
                         + ", ".join(f"{n}:PATH" if n in READERS else n for n in SOURCES))
    if not path.strip():
        raise UserError(f"corpus source {source!r} needs a path: {name}:PATH")
    _check_options(name, options)
    return READERS[name](path.strip(), **options)


def _check_options(name: str, options: dict) -> None:
    unknown = sorted(set(options) - set(reader_options(name)))
    if unknown:
        raise UserError(f"corpus {name}: unknown option(s) {', '.join(unknown)}; it takes "
                        f"{', '.join(reader_options(name))}")
