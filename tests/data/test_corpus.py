"""The utterance record and the Corpus type."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastser.audio.alignment import WordTiming
from fastser.data import Corpus, Utterance

LABELS = ("neutral", "happy", "sad", "angry")


def utt(i: int, label: str, speaker: str, session: str, gender: str | None = "F") -> Utterance:
    return Utterance(id=f"u{i}", path=f"/audio/u{i}.wav", label=label, speaker=speaker,
                     session=session, gender=gender)


@pytest.fixture
def corpus() -> Corpus:
    return Corpus("toy", LABELS, (
        utt(0, "happy", "A", "s1"), utt(1, "sad", "B", "s1", "M"), utt(2, "happy", "C", "s2"),
        utt(3, "angry", "C", "s2"), utt(4, "neutral", "D", "s3", None)))


def test_record_defaults_and_normalisation():
    u = Utterance("x", "a.wav", "sad", "spk", "ses", words=[WordTiming("hi", 0.0, 0.5)],
                  emotion_span=(1, 2))
    assert u.path == Path("a.wav")
    assert u.words == (WordTiming("hi", 0.0, 0.5),)
    assert u.emotion_span == (1.0, 2.0)
    assert (u.gender, u.valence, u.arousal, u.dominance, u.transcript, u.duration) == (
        None, None, None, None, None, None)


@pytest.mark.parametrize("kwargs, message", [
    ({"gender": "X"}, "gender must be"),
    ({"label": ""}, "label must be a non-empty string"),
    ({"speaker": None}, "speaker must be a non-empty string"),
    ({"emotion_span": (2.0, 1.0)}, "emotion_span"),
    ({"emotion_span": (-1.0, 1.0)}, "emotion_span"),
    ({"duration": 0.0}, "duration must be positive"),
    ({"words": [("hi", 0.0, 1.0)]}, "WordTiming"),
])
def test_record_rejects_bad_fields(kwargs, message):
    fields = dict(id="x", path="a.wav", label="sad", speaker="s", session="t")
    with pytest.raises(ValueError, match=message):
        Utterance(**{**fields, **kwargs})


def test_label_index_round_trip(corpus):
    for i, label in enumerate(LABELS):
        assert corpus.label_index(label) == i
        assert corpus.label_name(i) == label
    assert corpus.num_classes == 4
    assert corpus.targets() == [1, 2, 1, 3, 0]
    with pytest.raises(ValueError, match="unknown label 'joy'"):
        corpus.label_index("joy")
    with pytest.raises(ValueError, match="class index 4 outside"):
        corpus.label_name(4)


def test_container_protocol(corpus):
    assert len(corpus) == 5
    assert [u.id for u in corpus] == ["u0", "u1", "u2", "u3", "u4"]
    assert corpus[3].label == "angry"
    assert corpus.speakers == ("A", "B", "C", "D")
    assert corpus.sessions == ("s1", "s2", "s3")


def test_select_and_subset(corpus):
    assert [u.id for u in corpus.select(speakers=["C", "A"])] == ["u0", "u2", "u3"]
    assert [u.id for u in corpus.select(sessions=["s1"])] == ["u0", "u1"]
    assert [u.id for u in corpus.select(speakers=["A", "C"], sessions=["s2"])] == ["u2", "u3"]
    assert corpus.select(speakers=["A"]).labels == LABELS
    assert [u.id for u in corpus.subset([4, 0])] == ["u4", "u0"]
    assert len(corpus.select(speakers=[])) == 0
    with pytest.raises(ValueError, match=r"unknown speaker\(s\) \['Z'\]"):
        corpus.select(speakers=["A", "Z"])
    with pytest.raises(ValueError, match=r"unknown session\(s\) \['s9'\]"):
        corpus.select(sessions=["s9"])
    with pytest.raises(ValueError, match="not the string"):
        corpus.select(speakers="A")


def test_summary_counts(corpus):
    summary = corpus.summary()
    assert summary.utterances == 5
    assert summary.labels == {"neutral": 1, "happy": 2, "sad": 1, "angry": 1}
    assert list(summary.labels) == list(LABELS)
    assert summary.speakers == {"A": 1, "B": 1, "C": 2, "D": 1}
    assert summary.sessions == {"s1": 2, "s2": 2, "s3": 1}
    assert summary.genders == {"?": 1, "F": 3, "M": 1}
    assert "happy 2" in str(summary) and "C 2" in str(summary)


def test_corpus_rejects_inconsistent_contents():
    with pytest.raises(ValueError, match="has label 'joy'"):
        Corpus("bad", LABELS, (utt(0, "joy", "A", "s"),))
    with pytest.raises(ValueError, match="duplicate utterance id 'u0'"):
        Corpus("bad", LABELS, (utt(0, "sad", "A", "s"), utt(0, "sad", "B", "s")))
    with pytest.raises(ValueError, match="duplicate labels"):
        Corpus("bad", ("sad", "sad"))
    with pytest.raises(ValueError, match=r"has label 'sad', not one of \(\)"):
        Corpus("bad", (), (utt(0, "sad", "A", "s"),))


def test_segments_affect_and_unlabelled_utterances():
    u = Utterance("x", "long.wav", None, "s", "t", arousal=2, start=1.5, end=3.0)
    assert u.label is None and u.affect == (None, 2, None)
    assert (u.audio.path, u.audio.start, u.audio.end) == ("long.wav", 1.5, 3.0)
    for fields, message in [({"start": -1.0}, "start must be a time >= 0"),
                            ({"start": 2.0, "end": 2.0}, r"end must be a time after start \(2.0"),
                            ({"end": 0.0}, "end must be a time after start"),
                            ({"valence": float("nan")}, "valence must be a finite number"),
                            ({"dominance": "high"}, "dominance must be a finite number")]:
        with pytest.raises(ValueError, match=message):
            Utterance("x", "a.wav", "sad", "s", "t", **fields)
    corpus = Corpus("mixed", ("sad",), (utt(0, "sad", "A", "s1"), u))
    assert corpus.targets() == [0, -1]
    summary = corpus.summary()
    assert summary.unlabelled == 1 and summary.labels == {"sad": 1}
    assert summary.affect == {"valence": 0, "arousal": 1, "dominance": 0}
    assert summary.by_speaker == {"A": {"sad": 1}, "s": {"sad": 0}}
    assert summary.hours is None and "1 without an emotion label" in str(summary)
