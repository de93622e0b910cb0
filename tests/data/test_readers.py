"""CREMA-D, RAVDESS and EmoDB readers and open_corpus, on fake trees in the real layouts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from fastser.data import CorpusError, open_corpus, read_crema_d, read_emodb, read_ravdess


def touch_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(160), 16000)


# ---------------------------------------------------------------- CREMA-D

def test_crema_d_six_classes_every_field(crema_root):
    corpus = read_crema_d(crema_root)
    assert corpus.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgust")
    assert len(corpus) == 8
    utt = {u.id: u for u in corpus}
    first = utt["1001_DFA_ANG_XX"]
    assert first.path == crema_root / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    assert (first.label, first.speaker, first.session, first.gender) == (
        "angry", "1001", "1001", "M")
    assert first.transcript == "Don't forget a jacket"
    assert (first.valence, first.words, first.emotion_span) == (None, (), None)
    assert [utt[k].label for k in ("1001_IEO_HAP_HI", "1001_TIE_NEU_XX", "1001_IOM_SAD_LO",
                                   "1002_DFA_FEA_MD", "1002_IWW_DIS_XX")] == [
        "happy", "neutral", "sad", "fearful", "disgust"]
    assert utt["1002_TAI_ANG_HI"].gender == "F"
    assert utt["1002_TAI_ANG_HI"].transcript == "The airplane is almost full"
    assert corpus.speakers == ("1001", "1002", "1003")


def test_crema_d_four_class_and_missing_demographics(crema_root):
    (crema_root / "VideoDemographics.csv").unlink()
    corpus = read_crema_d(crema_root, four_class=True)
    assert corpus.labels == ("neutral", "happy", "sad", "angry")
    assert sorted(u.id for u in corpus) == sorted(
        ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1001_TIE_NEU_XX", "1001_IOM_SAD_LO",
         "1002_TAI_ANG_HI", "1003_MTI_NEU_XX"])
    assert {u.gender for u in corpus} == {None}


@pytest.mark.parametrize("name, message", [
    ("1001_DFA_ANG.wav", "file name is not"),
    ("1001_XYZ_ANG_XX.wav", "unknown sentence code 'XYZ'"),
    ("1001_DFA_JOY_XX.wav", "unknown emotion code 'JOY'"),
    ("1001_DFA_ANG_ZZ.wav", "unknown intensity level code 'ZZ'"),
])
def test_crema_d_bad_file_names(crema_root, name, message):
    assert_file_name_refused(read_crema_d, crema_root, crema_root / "AudioWAV" / name, message)


def assert_file_name_refused(reader, root, path, message):
    """A stray file at ``path`` makes ``reader(root)`` fail naming the file and the problem."""
    touch_wav(path)
    with pytest.raises(CorpusError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        reader(root)


@pytest.mark.parametrize("row, message", [
    ("1004,30,Other,Asian,Not Hispanic", "Sex must be Male or Female"),
    ("1004,30,Male", "expected 5 columns"),
    ("10x4,30,Male,Asian,Not Hispanic", "malformed ActorID"),
])
def test_crema_d_bad_demographics_lines(crema_root, row, message):
    path = crema_root / "VideoDemographics.csv"
    path.write_text(path.read_text() + row + "\n")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:5: {message}")):
        read_crema_d(crema_root)


def test_crema_d_bad_demographics_header(crema_root):
    path = crema_root / "VideoDemographics.csv"
    path.write_text("Actor,Age\n1001,51\n")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:1: header")):
        read_crema_d(crema_root)


def test_crema_d_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="crema-d: corpus root .* does not exist"):
        read_crema_d(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="is empty"):
        read_crema_d(tmp_path / "empty")
    (tmp_path / "noaudio" / "AudioWAV").mkdir(parents=True)
    with pytest.raises(CorpusError, match="no audio found"):
        read_crema_d(tmp_path / "noaudio")
    touch_wav(tmp_path / "fourless" / "AudioWAV" / "1001_DFA_FEA_XX.wav")
    with pytest.raises(CorpusError, match="no audio found"):
        read_crema_d(tmp_path / "fourless", four_class=True)


# ---------------------------------------------------------------- RAVDESS

def test_ravdess_speech_audio_only_by_default(ravdess_root):
    corpus = read_ravdess(ravdess_root)
    assert corpus.labels == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                             "surprised")
    utt = {u.id: u for u in corpus}
    # song (channel 02) and audio-video (modality 01) files are left out
    assert sorted(utt) == sorted(["03-01-01-01-01-01-01", "03-01-05-02-02-01-01",
                                  "03-01-02-01-02-02-12", "03-01-03-02-01-01-12",
                                  "03-01-06-01-02-01-12", "03-01-04-01-01-02-12"])
    angry = utt["03-01-05-02-02-01-01"]
    assert angry.path == ravdess_root / "Actor_01" / "03-01-05-02-02-01-01.wav"
    assert (angry.label, angry.speaker, angry.session, angry.gender) == (
        "angry", "Actor_01", "Actor_01", "M")
    assert angry.transcript == "Dogs are sitting by the door"
    fearful = utt["03-01-06-01-02-01-12"]
    assert (fearful.label, fearful.speaker, fearful.gender) == ("fearful", "Actor_12", "F")
    assert utt["03-01-02-01-02-02-12"].label == "calm"


def test_ravdess_options(ravdess_root):
    four = read_ravdess(ravdess_root, four_class=True)
    assert four.labels == ("neutral", "happy", "sad", "angry")
    assert sorted(u.label for u in four) == ["angry", "happy", "neutral", "sad"]
    with_song = read_ravdess(ravdess_root, include_song=True)
    assert "03-02-03-01-01-01-01" in {u.id for u in with_song}
    av = read_ravdess(ravdess_root, modalities=("01",))
    assert [u.id for u in av] == ["01-01-04-01-01-01-01"]


@pytest.mark.parametrize("name, message", [
    ("Actor_01/03-01-01-01-01-01.wav", "7 two-digit fields"),
    ("Actor_01/04-01-01-01-01-01-01.wav", "unknown modality code '04'"),
    ("Actor_01/03-01-09-01-01-01-01.wav", "unknown emotion code '09'"),
    ("Actor_01/03-01-01-03-01-01-01.wav", "unknown intensity code '03'"),
    ("Actor_01/03-01-01-01-03-01-01.wav", "unknown statement code '03'"),
    ("Actor_01/03-01-01-01-01-01-02.wav", "actor 02 in the file name but folder Actor_01"),
])
def test_ravdess_bad_file_names(ravdess_root, name, message):
    path = ravdess_root / name
    touch_wav(path)
    with pytest.raises(CorpusError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        read_ravdess(ravdess_root)


def test_ravdess_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_ravdess(tmp_path / "nope")
    touch_wav(tmp_path / "flat" / "03-01-01-01-01-01-01.wav")  # no Actor_ folders
    with pytest.raises(CorpusError, match="no audio found"):
        read_ravdess(tmp_path / "flat")


# ---------------------------------------------------------------- EmoDB

def test_emodb_every_field(emodb_root):
    corpus = read_emodb(emodb_root)
    assert corpus.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom")
    utt = {u.id: u for u in corpus}
    assert len(utt) == 8
    happy = utt["03a01Fa"]
    assert happy.path == emodb_root / "wav" / "03a01Fa.wav"
    assert (happy.label, happy.speaker, happy.session, happy.gender) == ("happy", "03", "03", "M")
    assert happy.transcript == "Der Lappen liegt auf dem Eisschrank."
    expected = {"03a02Wb": ("angry", "M"), "08b01Ta": ("sad", "F"), "08a04Nc": ("neutral", "F"),
                "09b10La": ("boredom", "F"), "10a05Ea": ("disgust", "M"),
                "16b09Ab": ("fearful", "F"), "13a07Nb": ("neutral", "F")}
    assert {k: (utt[k].label, utt[k].gender) for k in expected} == expected


def test_emodb_four_class(emodb_root):
    corpus = read_emodb(emodb_root, four_class=True)
    assert sorted(u.id for u in corpus) == ["03a01Fa", "03a02Wb", "08a04Nc", "08b01Ta",
                                            "13a07Nb"]


@pytest.mark.parametrize("name, message", [
    ("03a01F.wav", "file name is not"),
    ("04a01Fa.wav", "unknown speaker '04'"),
    ("03a03Fa.wav", "unknown text code 'a03'"),
    ("03a01Xa.wav", "unknown emotion letter 'X'"),
])
def test_emodb_bad_file_names(emodb_root, name, message):
    assert_file_name_refused(read_emodb, emodb_root, emodb_root / "wav" / name, message)


def test_emodb_layout_errors(tmp_path):
    (tmp_path / "emodb" / "wav").mkdir(parents=True)
    (tmp_path / "emodb" / "wav" / "readme.txt").write_text("no audio")
    with pytest.raises(CorpusError, match="no audio found"):
        read_emodb(tmp_path / "emodb")


# ---------------------------------------------------------------- open_corpus

def test_open_corpus_dispatches_with_options(crema_root, ravdess_root, emodb_root, iemocap_root):
    assert open_corpus(f"crema-d:{crema_root}").name == "crema-d"
    assert open_corpus(f"CREMA-D:{crema_root}", four_class=True).num_classes == 4
    assert open_corpus(f"ravdess:{ravdess_root}").name == "ravdess"
    assert open_corpus(f"emodb:{emodb_root}").name == "emodb"
    impro = open_corpus(f"iemocap:{iemocap_root}", improvised_only=True)
    assert impro.name == "iemocap" and len(impro) == 4
    assert open_corpus(f"iemocap:{iemocap_root}", classes=7).num_classes == 7
    with pytest.raises(ValueError, match=r"corpus iemocap: unknown option\(s\) four_class; "
                                         r"it takes classes, improvised_only, merge_excited"):
        open_corpus(f"iemocap:{iemocap_root}", four_class=True)
    with pytest.raises(ValueError, match=r"corpus synthetic: unknown option\(s\) speakerz; "
                                         r"it takes .*utterances"):
        open_corpus("synthetic", speakerz=3)


def test_open_corpus_synthetic_reads_the_cache(small_synthetic, synthetic_cache):
    corpus = open_corpus("synthetic", utterances=40, seed=3, cache_dir=synthetic_cache)
    assert corpus == small_synthetic


def test_open_corpus_reads_a_written_synthetic_folder(small_synthetic, synthetic_cache):
    (folder,) = [p for p in synthetic_cache.iterdir() if p.name.startswith("synthetic-")]
    assert open_corpus(f"synthetic:{folder}") == small_synthetic
    with pytest.raises(ValueError, match="takes no options"):
        open_corpus(f"synthetic:{folder}", utterances=3)


@pytest.mark.parametrize("source, error, message", [
    ("timit:/data", ValueError, "unknown corpus 'timit'"),
    ("iemocap", ValueError, "needs a path"),
    ("iemocap:", ValueError, "needs a path"),
    ("synthetic:/definitely/not/here", FileNotFoundError, "no manifest.json"),
    ("", ValueError, "non-empty string"),
    ("emodb:/definitely/not/here", FileNotFoundError, "does not exist"),
])
def test_open_corpus_errors(source, error, message):
    with pytest.raises(error, match=message):
        open_corpus(source)
