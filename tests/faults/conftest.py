"""Fixtures of the fault and bad-input tests: the toy recipe registered as a method, the tiny
synthetic corpus as a ``--data`` source, one short trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastser import methods
from fastser.cli import main
from faults.helpers import train_argv


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "toy", "toy_recipe:ToyRecipe")


@pytest.fixture(scope="session")
def corpus_source(tiny_corpus) -> str:
    """``--data`` of the tiny synthetic corpus (40 utterances, 4 voices)."""
    return f"synthetic:{Path(tiny_corpus[0].path).parents[1]}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, corpus_source) -> Path:
    """A finished one-epoch toy run (read-only: copy it with :func:`copy_run` to change it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(methods.METHODS, "toy", "toy_recipe:ToyRecipe")
        assert main(train_argv(corpus_source, out)) == 0
    return out
