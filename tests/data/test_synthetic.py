"""The synthetic corpus: contents, word timings, emotion spans, determinism and the cache."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import soundfile

import fastser.data.synthetic as synthetic
from fastser.data import CorpusError, SyntheticConfig, load_synthetic, read_synthetic
from fastser.data._espeak import synthesize_many
from fastser.data._synthetic_render import word_starts
from fastser.data.synthetic import write_synthetic

TINY = {"utterances": 12, "speakers": 4, "seed": 5}


def test_small_corpus_is_balanced_over_labels_speakers_and_sessions(small_synthetic):
    corpus = small_synthetic
    assert corpus.name == "synthetic"
    assert corpus.labels == ("neutral", "happy", "sad", "angry")
    summary = corpus.summary()
    assert summary.utterances == 40
    assert set(summary.labels.values()) == {10}
    assert len(summary.speakers) == 10 and set(summary.speakers.values()) == {4}
    assert summary.sessions == {f"Ses0{i}": 8 for i in range(1, 6)}
    assert summary.genders == {"F": 20, "M": 20}
    for speaker in corpus.speakers:
        assert Counter(u.label for u in corpus.select(speakers=[speaker])) == Counter(
            {label: 1 for label in corpus.labels})
    for u in corpus:
        assert u.speaker == u.session + u.gender


def test_audio_files_are_16khz_int16_of_the_stated_duration(small_synthetic):
    for u in small_synthetic:
        info = soundfile.info(u.path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert u.duration == pytest.approx(info.frames / 16000)
        audio, _ = soundfile.read(u.path)
        assert np.abs(audio).max() > 0.05  # speech, not silence


def test_valence_arousal_dominance_follow_the_classes(small_synthetic):
    def mean(label, attribute):
        return np.mean([getattr(u, attribute) for u in small_synthetic if u.label == label])

    for u in small_synthetic:
        assert all(1.0 <= getattr(u, a) <= 5.0 for a in ("valence", "arousal", "dominance"))
    assert mean("happy", "valence") > mean("neutral", "valence") > mean("sad", "valence")
    assert mean("angry", "arousal") > mean("neutral", "arousal")
    assert mean("angry", "dominance") > mean("sad", "dominance")


def test_word_timings_cover_the_transcript_in_order(small_synthetic):
    for u in small_synthetic:
        tokens = re.findall(r"[A-Za-z]+", u.transcript)
        assert [w.word.lower() for w in u.words] == [t.lower() for t in tokens]
        starts = [w.start for w in u.words]
        assert starts == sorted(starts)
        assert all(a.end == pytest.approx(b.start) for a, b in zip(u.words, u.words[1:]))
        assert 0.0 < u.words[0].start < 0.6  # after the leading silence
        assert u.words[-1].end <= u.duration
        assert u.duration - u.words[-1].end < 0.5  # then only the planned trailing silence


def test_emotion_spans(small_synthetic):
    partial = [u for u in small_synthetic if u.emotion_span[0] > 0]
    assert 0.1 <= len(partial) / len(small_synthetic) <= 0.5
    for u in small_synthetic:
        assert u.emotion_span[1] == pytest.approx(u.duration)
        if u in partial:
            assert u.label != "neutral"
            starts = [w.start for w in u.words]
            assert u.emotion_span[0] in starts[2:]  # neutral words come first
        else:
            assert u.emotion_span == (0.0, pytest.approx(u.duration))


def test_word_starts_maps_events_to_words():
    # "<speak>have been waiting. okay</speak>": words at 7, 12, 17, 26
    spans = [(7, 11), (12, 16), (17, 24), (26, 30)]
    # "have been" is one eSpeak word group; "okay" is reported one character early.
    events = np.array([[7, 4, 100], [17, 7, 500], [25, 4, 900]])
    starts = word_starts(spans, events, end=1.2)
    assert starts[0] == 0.1 and starts[2] == 0.5 and starts[3] == 0.9
    assert starts[1] == pytest.approx(0.1 + 0.4 * 5 / 10)  # shares "have been" by length
    # no events at all: the whole span is shared by length
    assert word_starts(spans[:2], np.zeros((0, 3), np.int64), end=1.0) == [0.0, 0.5]


def test_same_seed_gives_bit_identical_files_whatever_the_workers(tmp_path):
    first = write_synthetic(tmp_path / "a", workers=1, **TINY)
    second = write_synthetic(tmp_path / "b", workers=3, **TINY)
    for a, b in zip(first, second):
        assert a.path.read_bytes() == b.path.read_bytes()
    manifest_a = (tmp_path / "a" / "manifest.json").read_text()
    assert manifest_a == (tmp_path / "b" / "manifest.json").read_text()
    assert read_synthetic(tmp_path / "a") == first
    other = write_synthetic(tmp_path / "c", **{**TINY, "seed": 6})
    assert any(a.path.read_bytes() != c.path.read_bytes() for a, c in zip(first, other))


def test_cache_is_reused(small_synthetic, synthetic_cache, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the cached corpus was generated again")

    monkeypatch.setattr(synthetic, "synthesize_many", fail)
    assert load_synthetic(utterances=40, seed=3, cache_dir=synthetic_cache) == small_synthetic
    with pytest.raises(AssertionError, match="generated again"):
        load_synthetic(utterances=40, seed=4, cache_dir=synthetic_cache)
    assert [p.name for p in synthetic_cache.iterdir() if ".tmp-" in p.name] == []


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSER_CACHE", str(tmp_path / "envcache"))
    assert synthetic.default_cache_dir() == tmp_path / "envcache"
    corpus = load_synthetic(**TINY)
    assert corpus[0].path.is_relative_to(tmp_path / "envcache")


@pytest.mark.parametrize("kwargs, message", [
    ({"speakers": 1}, "speakers must be in"),
    ({"speakers": 13}, "speakers must be in"),
    ({"utterances": 5, "speakers": 10}, "at least the number of speakers"),
    ({"partial_fraction": 0.9}, "partial_fraction"),
    ({"emotion_strength": -1.0}, "emotion_strength"),
    ({"snr_db": (30.0, 10.0)}, "snr_db"),
    ({"snr_db": (10.0, 20.0, 30.0)}, "snr_db"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**kwargs)


def test_option_errors(tmp_path):
    with pytest.raises(TypeError, match="unknown synthetic corpus option"):
        load_synthetic(cache_dir=tmp_path, voices=3)
    with pytest.raises(TypeError, match="either a SyntheticConfig or keyword"):
        load_synthetic(SyntheticConfig(), cache_dir=tmp_path, seed=2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        write_synthetic(tmp_path / "full", **TINY)


def test_read_synthetic_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        read_synthetic(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{\n "format": "fastser-synthetic",\n "version": }')
    with pytest.raises(CorpusError, match=re.escape(f"{manifest}:3: not valid JSON")):
        read_synthetic(tmp_path)
    manifest.write_text(json.dumps({"format": "fastser-synthetic", "version": 0}))
    with pytest.raises(CorpusError, match="not a version-"):
        read_synthetic(tmp_path)
    manifest.write_text(json.dumps({"format": "fastser-synthetic",
                                    "version": synthetic.CORPUS_VERSION, "labels": ["a"],
                                    "utterances": [{"id": "x"}]}))
    with pytest.raises(CorpusError, match="malformed utterance record"):
        read_synthetic(tmp_path)


def test_espeak_errors_name_the_job():
    with pytest.raises(RuntimeError, match="job bad: eSpeak NG has no voice 'xx-nonexistent'"):
        synthesize_many([{"key": "bad", "voice": "xx-nonexistent", "ssml": "<speak>hi</speak>"}])
