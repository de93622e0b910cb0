"""The user's class set: label maps (inline pairs, EmoBox-style JSON files) and label
selection, applied by open_corpus to any source, with errors for unknown labels."""

from __future__ import annotations

import json

import pytest

from fastser.data import (Corpus, LabelMap, Utterance, apply_labels, open_corpus,
                          parse_label_map, parse_labels)
from fastser.errors import CorpusError, UserError

LABELS = ("neutral", "excited", "happy", "sad", "angry")


def utt(i: int, label: str | None, **fields) -> Utterance:
    return Utterance(f"u{i}", f"/a/u{i}.wav", label, "spk", "ses", **fields)


@pytest.fixture
def corpus() -> Corpus:
    return Corpus("toy", LABELS, (utt(0, "excited"), utt(1, "sad"), utt(2, "happy"),
                                  utt(3, "angry"), utt(4, "neutral"), utt(5, None, arousal=2.0)))


def test_relabel_merges_in_the_first_place_of_the_merged_name(corpus):
    merged = corpus.relabel({"excited": "happy"})
    assert merged.labels == ("neutral", "happy", "sad", "angry")
    assert [u.label for u in merged] == ["happy", "sad", "happy", "angry", "neutral", None]
    renamed = corpus.relabel({"angry": "anger", "neutral": "calm"})
    assert renamed.labels == ("calm", "excited", "happy", "sad", "anger")
    assert [u.id for u in renamed] == [u.id for u in corpus]
    with pytest.raises(CorpusError, match=r"label map names \['exited'\], not labels of the "
                                          "corpus"):
        corpus.relabel({"exited": "happy"})
    with pytest.raises(CorpusError, match="label map sends 'sad' to ''"):
        corpus.relabel({"sad": ""})


def test_select_labels_fixes_the_class_order_and_drops_the_rest(corpus):
    chosen = corpus.select_labels(["sad", "happy"])
    assert chosen.labels == ("sad", "happy")
    assert [u.id for u in chosen] == ["u1", "u2"]  # no unlabelled utterance either
    assert chosen.targets() == [0, 1]
    with pytest.raises(CorpusError, match=r"unknown label\(s\) \['joy'\]"):
        corpus.select_labels(["sad", "joy"])
    with pytest.raises(CorpusError, match="name a class twice"):
        corpus.select_labels(["sad", "sad"])
    with pytest.raises(CorpusError, match="not the string"):
        corpus.select_labels("sad")


def test_parse_options():
    assert parse_labels(" neutral, happy ,sad") == ("neutral", "happy", "sad")
    for bad in ("", "a,,b", "a,a"):
        with pytest.raises(UserError, match="--labels"):
            parse_labels(bad)
    assert parse_label_map("excited=happy, fru = angry") == LabelMap(
        {"excited": "happy", "fru": "angry"})
    for bad in ("excited=", "=happy", "a=b,a=c", "a=b,c"):
        with pytest.raises(UserError, match="--label-map"):
            parse_label_map(bad)
    with pytest.raises(UserError, match="neither OLD=NEW pairs nor a JSON file"):
        parse_label_map("missing.json")


def test_a_label_map_file_names_every_label(corpus, tmp_path):
    path = tmp_path / "label_map.json"
    path.write_text(json.dumps({"neutral": "Neutral", "excited": "Happy", "happy": "Happy",
                                "sad": "Sad", "angry": "Angry", "fear": "Fear"}))
    label_map = parse_label_map(str(path))
    assert label_map.complete and label_map.origin == str(path)
    mapped = apply_labels(corpus, label_map=label_map)
    assert mapped.labels == ("Neutral", "Happy", "Sad", "Angry")  # 'fear' is not in the data
    path.write_text(json.dumps({"neutral": "Neutral", "happy": "Happy"}))
    with pytest.raises(CorpusError, match=f"toy: utterance 'u0' has label 'excited', which the "
                                          f"label map {path} does not name"):
        apply_labels(corpus, label_map=parse_label_map(str(path)))
    path.write_text("[1, 2]")
    with pytest.raises(CorpusError, match="a label map is a JSON object"):
        parse_label_map(str(path))
    path.write_text("{")
    with pytest.raises(CorpusError, match="label_map.json:1: not valid JSON"):
        parse_label_map(str(path))


def test_map_then_select_through_open_corpus_of_a_reader(crema_root):
    corpus = open_corpus(f"crema-d:{crema_root}", label_map={"fearful": "afraid"},
                         labels=["angry", "afraid", "neutral"])
    assert corpus.labels == ("angry", "afraid", "neutral")
    assert sorted(u.id for u in corpus) == ["1001_DFA_ANG_XX", "1001_TIE_NEU_XX",
                                            "1002_DFA_FEA_MD", "1002_TAI_ANG_HI",
                                            "1003_MTI_NEU_XX"]
    with pytest.raises(CorpusError, match=r"unknown label\(s\) \['excited'\]"):
        open_corpus(f"crema-d:{crema_root}", labels=["excited"])


def test_label_map_round_trips_through_plain_values():
    label_map = LabelMap({"a": "b"}, complete=True, origin="m.json")
    assert LabelMap.from_dict(json.loads(json.dumps(label_map.to_dict()))) == label_map
