"""Official folds: EmoBox's fold folders and id,fold CSVs as splits, validation drawn from
the training speakers that are not test speakers (or the fold's own list), and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastser.data import Corpus, Utterance
from fastser.data.folds import Fold, read_folds, splits_from_folds, unmatched_ids
from fastser.errors import CorpusError, MissingPathError, UserError

from .conftest import write_text

SPEAKERS = ("A", "B", "C", "D")


@pytest.fixture
def corpus() -> Corpus:
    """Four speakers with three utterances each: A0, A1, A2, B0, ..."""
    return Corpus("toy", ("sad", "happy"), tuple(
        Utterance(f"{s}{i}", f"/a/{s}{i}.wav", ("sad", "happy")[i % 2], s, s)
        for s in SPEAKERS for i in range(3)))


def emobox_records(ids, dataset="toy"):
    return "".join(json.dumps({"key": f"{dataset}-{i}", "dataset": dataset, "wav": f"x/{i}.wav",
                               "emo": "s", "length": 1.0}) + "\n" for i in ids)


def write_emobox(root: Path, folds: dict[int, dict[str, list[str]]]) -> Path:
    for number, parts in folds.items():
        for part, ids in parts.items():
            write_text(root / f"fold_{number}" / f"toy_{part}_fold_{number}.jsonl",
                       emobox_records(ids))
    return root


def ids(corpus: Corpus) -> list[str]:
    return sorted(u.id for u in corpus)


def test_emobox_folders_with_prefixed_keys_and_official_validation(corpus, tmp_path):
    root = write_emobox(tmp_path / "toy", {
        1: {"train": ["B0", "B1", "B2", "C0", "C1", "C2", "D0"], "test": ["A0", "A1", "A2"]},
        2: {"train": ["A0", "A1", "A2", "C0", "C1", "C2"], "test": ["B0", "B1", "B2"],
            "valid": ["D0", "D1", "D2"]},
    })
    write_text(root / "toy.jsonl", emobox_records(["A0"]))  # the dataset's own list: ignored
    folds = read_folds(root)
    assert [f.name for f in folds] == ["1", "2"] and folds[0].prefix == "toy-"
    assert folds[0].validation is None and folds[1].validation == ("toy-D0", "toy-D1", "toy-D2")
    first, second = splits_from_folds(corpus, folds, validation_speakers=1, seed=0)
    assert first.name == "fold 1" and ids(first.test) == ["A0", "A1", "A2"]
    # validation: one of the training speakers that are not test speakers, moved out of train
    drawn = {u.speaker for u in first.validation}
    assert len(drawn) == 1 and drawn < {"B", "C", "D"}
    assert ids(first.train) + ids(first.validation) == sorted(
        ["B0", "B1", "B2", "C0", "C1", "C2", "D0"])
    assert ids(second.validation) == ["D0", "D1", "D2"]
    assert ids(second.train) == ["A0", "A1", "A2", "C0", "C1", "C2"]
    again = splits_from_folds(corpus, folds, validation_speakers=1, seed=0)
    assert ids(again[0].validation) == ids(first.validation)  # seeded


def test_csv_of_id_and_fold(corpus, tmp_path):
    rows = "id,fold\n" + "".join(f"{u.id},{2 if u.speaker in 'AB' else 10}\n" for u in corpus)
    splits = splits_from_folds(corpus, read_folds(write_text(tmp_path / "f.csv", rows)),
                               validation_speakers=1, seed=3)
    assert [s.name for s in splits] == ["fold 2", "fold 10"]  # numeric order
    assert {u.speaker for u in splits[0].test} == {"A", "B"}
    assert len({u.speaker for u in splits[0].validation}) == 1
    assert {u.speaker for u in splits[0].train} | {u.speaker for u in splits[0].validation} == {
        "C", "D"}
    none = splits_from_folds(corpus, read_folds(tmp_path / "f.csv"), validation_speakers=0)
    assert len(none[0].validation) == 0 and len(none[0].train) == 6


def test_speaker_dependent_folds_get_no_validation(corpus):
    every_other = [u.id for u in corpus][::2]
    rest = [u.id for u in corpus][1::2]
    split, = splits_from_folds(corpus, [Fold("1", tuple(rest), tuple(every_other))])
    assert len(split.validation) == 0 and ids(split.train) == sorted(rest)


def test_ids_the_corpus_lacks_are_left_out_and_listed(corpus):
    fold = Fold("1", ("B0", "B1", "Z9"), ("A0", "Y1"))
    split, = splits_from_folds(corpus, [fold], validation_speakers=0)
    assert ids(split.train) == ["B0", "B1"] and ids(split.test) == ["A0"]
    assert unmatched_ids(corpus, [fold]) == ["Y1", "Z9"]


@pytest.mark.parametrize("fold, message", [
    (Fold("1", ("B0", "A0"), ("A0",)), "fold 1: utterance 'A0' is in both its train and test"),
    (Fold("1", ("x1", "x2"), ("A0",)), r"fold 1: none of its 2 train ids is an utterance of "
                                       r"'toy' \(ids like \('x1',\), the corpus' like \['A0'\]"),
    (Fold("1", ("B0",), ("x",)), "none of its 1 test ids"),
])
def test_bad_folds(corpus, fold, message):
    with pytest.raises(CorpusError, match=message):
        splits_from_folds(corpus, [fold])


@pytest.mark.parametrize("text, message", [
    ("utt,fold\na,1\n", r"f.csv:1: expected a header with an id column"),
    ("id,fold\na,1\nb\n", r"f.csv:3: 1 cells, the header has 2"),
    ("id,fold\na,1\na,2\n", r"f.csv:3: utterance 'a' has a fold already \(row 2\)"),
    ("id,fold\na,1\nb,\n", r"f.csv:3: needs an utterance id and a fold"),
    ("id,fold\na,1\nb,1\n", r"needs at least 2 folds, got \['1'\]"),
])
def test_bad_csv(tmp_path, text, message):
    with pytest.raises(CorpusError, match=message):
        read_folds(write_text(tmp_path / "f.csv", text))


def test_bad_emobox_folders_and_paths(tmp_path):
    with pytest.raises(MissingPathError, match="fold file .* does not exist"):
        read_folds(tmp_path / "none")
    with pytest.raises(UserError, match="expected an EmoBox dataset folder"):
        read_folds(write_text(tmp_path / "f.json", "{}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no fold_<k>/ folders"):
        read_folds(tmp_path / "empty")
    write_emobox(tmp_path / "half", {1: {"train": ["A0"]}})
    with pytest.raises(CorpusError, match="no \\*_test_fold_1.jsonl file"):
        read_folds(tmp_path / "half")
    root = write_emobox(tmp_path / "bad", {1: {"train": ["A0"], "test": ["B0"]}})
    write_text(root / "fold_1" / "toy_test_fold_1.jsonl", '{"key": "x"}\n{"wav": "y"}\n')
    with pytest.raises(CorpusError, match="toy_test_fold_1.jsonl:2: expected a JSON object "
                                          "with a 'key'"):
        read_folds(root)
