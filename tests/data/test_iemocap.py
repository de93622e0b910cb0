"""IEMOCAP reader on a fake tree in the release's layout."""

from __future__ import annotations

import re

import pytest
from fastser.audio.alignment import WordTiming
from fastser.data import CorpusError, read_iemocap

# The fake tree (conftest.iemocap_root) lists 8 utterances; fru and xxx are skipped.
KEPT = ("Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses01F_script01_1_F000",
        "Ses01F_script01_1_M000", "Ses02M_impro02_F000", "Ses02M_impro02_M000")


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_reads_every_field(iemocap_root):
    corpus = read_iemocap(iemocap_root)
    assert corpus.name == "iemocap"
    assert corpus.labels == ("neutral", "happy", "sad", "angry")
    assert sorted(u.id for u in corpus) == sorted(KEPT)
    utt = {u.id: u for u in corpus}
    first = utt["Ses01F_impro01_F000"]
    assert first.path == (iemocap_root / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
                          / "Ses01F_impro01_F000.wav")
    assert (first.label, first.speaker, first.session, first.gender) == (
        "neutral", "Ses01F", "Ses01", "F")
    assert (first.valence, first.arousal, first.dominance) == (2.5, 2.5, 2.5)
    assert first.duration == pytest.approx(8.2357 - 6.2901)
    assert first.transcript == "Excuse me."
    assert first.words == (WordTiming("<s>", 0.0, 0.19), WordTiming("EXCUSE", 0.19, 0.44),
                           WordTiming("ME", 0.44, 0.56), WordTiming("</s>", 0.56, 0.94))
    assert first.emotion_span is None
    male = utt["Ses01F_impro01_M000"]
    assert (male.label, male.speaker, male.gender) == ("happy", "Ses01M", "M")  # exc -> happy
    assert (male.valence, male.arousal, male.dominance) == (3.5, 4.0, 3.0)
    assert male.transcript == "Do you have your forms?" and male.words == ()
    scripted = utt["Ses01F_script01_1_M000"]
    assert (scripted.label, scripted.speaker, scripted.transcript) == ("sad", "Ses01M", None)
    assert scripted.path.parent.name == "Ses01F_script01_1"
    assert utt["Ses01F_script01_1_F000"].label == "angry"
    # Session 2's dialog is led by a male actor; the utterance's own letter decides.
    assert (utt["Ses02M_impro02_F000"].speaker, utt["Ses02M_impro02_F000"].gender,
            utt["Ses02M_impro02_F000"].label) == ("Ses02F", "F", "happy")
    assert corpus.speakers == ("Ses01F", "Ses01M", "Ses02F", "Ses02M")
    assert corpus.sessions == ("Ses01", "Ses02")


def test_excited_can_be_skipped_and_improvised_selected(iemocap_root):
    no_exc = read_iemocap(iemocap_root, merge_excited=False)
    assert "Ses01F_impro01_M000" not in {u.id for u in no_exc}
    assert len(no_exc) == len(KEPT) - 1
    impro = read_iemocap(iemocap_root, improvised_only=True)
    assert sorted(u.id for u in impro) == ["Ses01F_impro01_F000", "Ses01F_impro01_M000",
                                           "Ses02M_impro02_F000", "Ses02M_impro02_M000"]


def test_seven_classes_keep_excited_frustrated_and_surprised(iemocap_root):
    seven = read_iemocap(iemocap_root, classes=7)
    assert seven.labels == ("neutral", "happy", "sad", "angry", "excited", "frustrated",
                            "surprised")
    by_id = {u.id: u.label for u in seven}
    assert by_id["Ses01F_impro01_M000"] == "excited"
    assert by_id["Ses01F_impro01_F001"] == "frustrated"
    assert "Ses01F_impro01_M001" not in by_id  # xxx: no agreement, skipped
    assert len(seven) == len(KEPT) + 1
    impro = read_iemocap(iemocap_root, classes=7, improvised_only=True,
                         merge_excited=False)
    assert {u.label for u in impro} >= {"excited", "frustrated"}
    with pytest.raises(CorpusError, match="merge_excited applies to the 4-class set"):
        read_iemocap(iemocap_root, classes=7, merge_excited=True)
    with pytest.raises(CorpusError, match="classes must be 4 or 7"):
        read_iemocap(iemocap_root, classes=6)


def test_root_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_iemocap(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="is empty"):
        read_iemocap(tmp_path / "empty")
    write_text(tmp_path / "other" / "README.txt", "no sessions here")
    with pytest.raises(CorpusError, match="no Session"):
        read_iemocap(tmp_path / "other")


def test_no_four_class_utterances_is_an_error(tmp_path):
    root = tmp_path / "iemocap"
    write_text(root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt",
               "[1.0 - 2.0]\tSes01F_impro01_F000\tfru\t[2.0, 3.0, 3.0]\n")
    with pytest.raises(CorpusError, match="no audio found"):
        read_iemocap(root)


EVALUATION = ("Session1", "dialog", "EmoEvaluation", "Ses01F_impro01.txt")


@pytest.mark.parametrize("line, message", [
    ("this line is not IEMOCAP", "unknown line"),
    ("[6.29 - 8.23] Ses01F_impro01_F000 neu [2.5, 2.5, 2.5]", "malformed summary line"),
    ("[6.29 - 8.23]\tSes01F_impro01_F000\tneu\t[2.5, 2.5]", "malformed summary line"),
    ("[6.29 - 8.23]\tSes01F_impro01_F000\tjoy\t[2.5, 2.5, 2.5]", "unknown emotion code 'joy'"),
    ("[6.29 - 8.23]\tSpeaker1_impro01\tneu\t[2.5, 2.5, 2.5]", "malformed utterance id"),
    ("[6.29 - 8.23]\tSes01F_impro01_F009\tneu\t[2.5, 2.5, 2.5]", "audio of Ses01F_impro01_F009"),
])
def test_bad_evaluation_lines_name_file_and_line(iemocap_root, line, message):
    path = iemocap_root.joinpath(*EVALUATION)
    lines = path.read_text().splitlines()
    lines.insert(4, line)  # becomes line 5
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:5: ") + ".*" + re.escape(message)):
        read_iemocap(iemocap_root)


def test_bad_wdseg_line_names_file_and_line(iemocap_root):
    path = (iemocap_root / "Session1" / "sentences" / "ForcedAlignment" / "Ses01F_impro01"
            / "Ses01F_impro01_F000.wdseg")
    lines = path.read_text().splitlines()
    for bad, message in (("\t19    x      -1165006 EXCUSE", "must be integers"),
                         ("\t19    43     EXCUSE", "expected 4 columns"),
                         ("\t50    43      -1165006 EXCUSE", "SFrm <= EFrm")):
        path.write_text("\n".join(lines[:2] + [bad] + lines[3:]) + "\n")
        with pytest.raises(CorpusError, match=re.escape(f"{path}:3: ") + ".*" + message):
            read_iemocap(iemocap_root)


def test_bad_transcription_line_names_file_and_line(iemocap_root):
    path = iemocap_root / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    path.write_text(path.read_text() + "garbage without a time stamp\n")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:4: ") + "malformed transcription"):
        read_iemocap(iemocap_root)
