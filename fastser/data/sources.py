"""Open a corpus from a source string: ``synthetic`` (generated and cached),
``synthetic:PATH`` (a folder written by ``fastser synth``), ``iemocap:PATH``,
``crema-d:PATH``, ``ravdess:PATH`` or ``emodb:PATH``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields

from fastser.data.corpus import Corpus
from fastser.data.crema_d import read_crema_d
from fastser.data.emodb import read_emodb
from fastser.data.iemocap import read_iemocap
from fastser.data.ravdess import read_ravdess
from fastser.data.synthetic import SyntheticConfig, load_synthetic, read_synthetic
from fastser.errors import UserError

READERS: dict[str, Callable[..., Corpus]] = {
    "iemocap": read_iemocap, "crema-d": read_crema_d, "ravdess": read_ravdess,
    "emodb": read_emodb,
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


def open_corpus(source: str, **options) -> Corpus:
    """The corpus named by ``source``; ``options`` go to its reader (e.g. ``four_class=True``
    for CREMA-D, ``improvised_only=True`` or ``classes=7`` for IEMOCAP, ``utterances=40`` for
    synthetic; an option the reader does not take is a UserError listing those it takes)."""
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
