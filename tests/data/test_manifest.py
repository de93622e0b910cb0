"""Manifests (CSV, TSV, JSON lines, JSON) pointing at generated audio: every field, the aliases
of other tools, segments of a longer recording, the round trip of every reader through
write_manifest, and an error naming the file and row for each mistake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from fastser.audio.alignment import WordTiming
from fastser.data import open_corpus
from fastser.data.manifest import read_manifest, read_word_timings, write_manifest
from fastser.errors import CorpusError, MissingPathError, PathExistsError, UserError

from .conftest import IEMOCAP_WDSEG, write_text, write_wav

HEADER = "path,label,speaker,session,gender,valence,arousal,transcript\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """wav/a.wav, wav/b.wav (0.05 s each) and long.wav (2 s) under tmp_path/data."""
    root = tmp_path / "data"
    for name in ("a", "b"):
        write_wav(root / "wav" / f"{name}.wav")
    write_wav(root / "long.wav", seconds=2.0)
    return root


def test_csv_every_field(folder):
    write_text(folder / "words" / "b.wdseg", IEMOCAP_WDSEG)
    manifest = write_text(folder / "m.csv", (
        "path,id,label,speaker,session,gender,valence,arousal,dominance,transcript,words\n"
        'wav/a.wav,,happy,spk1,s1,female,3.5,4,2.5,"Hi, there.",'
        '"[[""hi"", 0.0, 0.02], [""there"", 0.02, 0.05]]"\n'
        "wav/b.wav,u2,sad,spk2,,M,,,,,words/b.wdseg\n"))
    corpus = read_manifest(manifest)
    assert corpus.name == str(manifest) and corpus.labels == ("happy", "sad")
    a, b = corpus
    assert (a.id, a.path, a.label, a.speaker, a.session, a.gender) == (
        "wav/a", folder / "wav" / "a.wav", "happy", "spk1", "s1", "F")
    assert (a.valence, a.arousal, a.dominance, a.transcript) == (3.5, 4.0, 2.5, "Hi, there.")
    assert a.words == (WordTiming("hi", 0.0, 0.02), WordTiming("there", 0.02, 0.05))
    assert (b.id, b.session, b.gender, b.valence, b.transcript) == ("u2", "spk2", "M", None,
                                                                    None)
    assert [w.word for w in b.words] == ["<s>", "EXCUSE", "ME", "</s>"]


def test_jsonl_emobox_style_aliases_and_segments(folder):
    records = [
        {"key": "long-1", "wav": "long.wav", "emo": "n", "spk_id": 7, "start_time": 0.0,
         "end_time": 0.5, "dataset": "mine", "channel": 1, "length": 2.0},
        {"key": "long-2", "wav": "long.wav", "emo": "a", "spk_id": 7, "start_time": 0.5,
         "end_time": 1.25},
    ]
    manifest = write_text(folder / "m.jsonl",
                          "\n".join(json.dumps(r) for r in records) + "\n\n")
    corpus = read_manifest(manifest)
    first, second = corpus
    assert (first.id, first.label, first.speaker, first.start, first.end) == (
        "long-1", "n", "7", 0.0, 0.5)
    assert second.audio.load().shape == (12000,)  # 0.75 s at 16 kHz
    full, _ = soundfile.read(folder / "long.wav", dtype="float32")
    np.testing.assert_allclose(second.audio.load().numpy(), full[8000:20000], atol=1e-6)
    assert second.audio.seconds() == pytest.approx(0.75)
    assert corpus.summary(audio=True).hours == pytest.approx(1.25 / 3600)


def test_json_object_of_records_and_data_root(folder):
    manifest = write_text(folder / "m.json", json.dumps({
        "x1": {"wav": "{data_root}/wav/a.wav", "emo": "angry", "speaker": "s"},
        "x2": {"wav": "wav/b.wav", "emo": "sad", "speaker": "s"}}))
    corpus = read_manifest(manifest)
    assert [(u.id, u.path, u.label) for u in corpus] == [
        ("x1", folder / "wav" / "a.wav", "angry"), ("x2", folder / "wav" / "b.wav", "sad")]


def test_tsv_semicolons_and_regression_only(folder):
    tsv = write_text(folder / "m.tsv", "file\tspeaker\tEmoAct\nwav/a.wav\tA\t2.5\n"
                                       "wav/b.wav\tB\t4\n")
    corpus = read_manifest(tsv)
    assert corpus.labels == () and [u.label for u in corpus] == [None, None]
    assert [u.arousal for u in corpus] == [2.5, 4.0]
    assert corpus.summary().affect == {"valence": 0, "arousal": 2, "dominance": 0}
    semicolons = write_text(folder / "m.csv", "path;label;speaker\nwav/a.wav;sad;A\n")
    assert [u.label for u in read_manifest(semicolons)] == ["sad"]


def test_open_corpus_reads_manifests_with_labels(folder):
    write_text(folder / "m.csv", "path,label,speaker\nwav/a.wav,excited,A\n"
                                 "wav/b.wav,sad,B\nlong.wav,happy,B\n")
    corpus = open_corpus(f"manifest:{folder / 'm.csv'}", label_map={"excited": "happy"},
                         labels=["sad", "happy"])
    assert corpus.labels == ("sad", "happy")
    assert [u.label for u in corpus] == ["happy", "sad", "happy"]


def write_rows(folder: Path, rows: str, name: str = "m.csv") -> Path:
    return write_text(folder / name, rows)


@pytest.mark.parametrize("text, line, message", [
    ("label,speaker\nsad,A\n", 1, "no path column (named one of path, file, wav"),
    ("path,label\nwav/a.wav,sad\n", 1, "no speaker column"),
    ("path,label,emotion,speaker\nwav/a.wav,sad,sad,A\n", 1,
     "two columns give the label: 'label' and 'emotion'"),
    ("path,label,speaker\nwav/a.wav,sad,A\nwav/missing.wav,sad,A\n", 3,
     "audio file 'wav/missing.wav' not found"),
    ("path,label,speaker\nwav/a.wav,sad,A\nwav/a.wav,happy,B\n", 3,
     "duplicate utterance id 'wav/a' (also row 2); give every row an id"),
    ("path,label,speaker\nwav/a.wav,,A\n", 2, "no label and no affect value"),
    ("path,label,speaker\nwav/a.wav,sad,\n", 2, "no speaker"),
    ("path,label,speaker,valence\nwav/a.wav,sad,A,high\n", 2, "valence must be a number"),
    ("path,label,speaker,gender\nwav/a.wav,sad,A,X\n", 2, "gender must be F, M"),
    ("path,label,speaker,start,end\nlong.wav,sad,A,1.5,1.0\n", 2, "end must be a time after"),
    ('path,label,speaker,words\nwav/a.wav,sad,A,"[[1, 0, 1]]"\n', 2, "words must be a list of"),
    ("path,label,speaker,words\nwav/a.wav,sad,A,w.json\n", 2, "word timings file 'w.json'"),
    ("path,label,speaker\nwav/a.wav,sad\n", 2, "2 cells, the header has 3 columns"),
    ("\n", 1, "expected a header row"),
])
def test_csv_errors_name_the_file_and_row(folder, text, line, message):
    manifest = write_rows(folder, text)
    with pytest.raises(CorpusError, match=re.escape(f"{manifest}:{line}: {message}")):
        read_manifest(manifest)


@pytest.mark.parametrize("lines, line, message", [
    (['{"path": "wav/a.wav", "label": "sad", "speaker": "A"}', "not json"], 2,
     "not valid JSON"),
    (['["wav/a.wav"]'], 1, "expected a JSON object, got list"),
    (['{"path": "wav/a.wav", "label": "sad"}'], 1, "no speaker (a field named one of"),
    (['{"path": "wav/a.wav", "label": ["sad"], "speaker": "A"}'], 1, "label must be text"),
    (['{"path": "wav/a.wav", "label": "sad", "speaker": "A", "arousal": true}'], 1,
     "arousal must be a number"),
    (['{"path": "wav/a.wav", "label": "sad", "speaker": "A", "words": [["hi", 0.5, 0.1]]}'],
     1, "word 'hi' needs times 0 <= start <= end"),
])
def test_jsonl_errors_name_the_file_and_row(folder, lines, line, message):
    manifest = write_rows(folder, "\n".join(lines) + "\n", "m.jsonl")
    with pytest.raises(CorpusError, match=re.escape(f"{manifest}:{line}: {message}")):
        read_manifest(manifest)


def test_file_level_errors(folder, tmp_path):
    with pytest.raises(MissingPathError, match="manifest .*nope.csv does not exist"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(UserError, match=r"unknown format '\.xlsx'"):
        read_manifest(write_rows(folder, "x", "m.xlsx"))
    with pytest.raises(CorpusError, match="lists no utterance"):
        read_manifest(write_rows(folder, "path,label,speaker\n"))
    with pytest.raises(CorpusError, match="record 1: no path"):
        read_manifest(write_rows(folder, '[{"label": "sad", "speaker": "A"}]', "m.json"))


def test_segment_outside_its_file_is_an_audio_error(folder):
    corpus = read_manifest(write_rows(folder, "path,id,label,speaker,start,end\n"
                                              "long.wav,x,sad,A,1.0,2.5\n"))
    with pytest.raises(ValueError, match=r"long.wav \[1-2.5 s\]: the segment ends at 2.5 s, "
                                         "past the end of the 2.000 s file"):
        corpus[0].audio.load()


def test_word_timings_files(tmp_path):
    words = write_text(tmp_path / "w.json", '[["hi", 0.1, 0.4], ["you", 0.5, 0.9]]')
    assert read_word_timings(words) == (WordTiming("hi", 0.1, 0.4), WordTiming("you", 0.5, 0.9))
    with pytest.raises(CorpusError, match="neither a .wdseg file nor a JSON list"):
        read_word_timings(write_text(tmp_path / "bad.json", "{"))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv"])
def test_every_reader_round_trips_through_a_manifest(suffix, tmp_path, iemocap_root,
                                                     crema_root, ravdess_root, emodb_root,
                                                     small_synthetic):
    sources = {"iemocap": iemocap_root, "crema-d": crema_root, "ravdess": ravdess_root,
               "emodb": emodb_root}
    corpora = [open_corpus(f"{name}:{root}") for name, root in sources.items()]
    for corpus in [*corpora, small_synthetic]:
        out = write_manifest(corpus, tmp_path / "out" / f"{corpus.name}{suffix}")
        again = read_manifest(out)
        assert again.utterances == corpus.utterances, corpus.name
        assert set(again.labels) == {u.label for u in corpus}
    with pytest.raises(PathExistsError, match="exists"):
        write_manifest(corpora[0], tmp_path / "out" / f"iemocap{suffix}")
