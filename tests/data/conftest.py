"""Fake corpus trees in the real layouts (tiny generated wavs) and a small synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from fastser.data.synthetic import load_synthetic

SMALL_SYNTHETIC = {"utterances": 40, "seed": 3}


def write_wav(path: Path, seconds: float = 0.05, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), rate, subtype="PCM_16")
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


IEMOCAP_EVALUATIONS = {
    ("Session1", "Ses01F_impro01"): (
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\nC-E3:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.5000, 4.0000, 3.0000]\n"
        "C-E1:\tExcited;\t()\n\n"
        "[12.0000 - 13.5000]\tSes01F_impro01_F001\tfru\t[2.0000, 3.5000, 3.0000]\n\n"
        "[14.0000 - 15.2500]\tSes01F_impro01_M001\txxx\t[2.5000, 3.0000, 3.0000]\n"),
    ("Session1", "Ses01F_script01_1"): (
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[1.0000 - 3.0000]\tSes01F_script01_1_F000\tang\t[1.5000, 4.0000, 4.0000]\n\n"
        "[3.5000 - 6.0000]\tSes01F_script01_1_M000\tsad\t[1.7500, 2.0000, 2.2500]\n"),
    ("Session2", "Ses02M_impro02"): (
        "[0.5000 - 2.0000]\tSes02M_impro02_F000\thap\t[4.0000, 3.0000, 3.0000]\n\n"
        "[2.5000 - 4.0000]\tSes02M_impro02_M000\tneu\t[3.0000, 2.0000, 2.5000]\n"),
}
IEMOCAP_WDSEG = (
    "\tSFrm  EFrm    SegAScr Word\n"
    "\t0     18      -1105308 <s>\n"
    "\t19    43      -1165006 EXCUSE\n"
    "\t44    55      -505866 ME(2)\n"
    "\t56    93      -2041210 </s>\n"
    " Total Energy: -4817390\n")
IEMOCAP_TRANSCRIPT = (
    "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
    "Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?\n"
    "Ses01F_impro01_F001 [012.0000-013.5000]: Yeah.\n")


@pytest.fixture
def iemocap_root(tmp_path: Path) -> Path:
    """A two-session IEMOCAP tree: 8 evaluated utterances, 6 of them 4-class."""
    root = tmp_path / "IEMOCAP_full_release"
    for (session, dialog), text in IEMOCAP_EVALUATIONS.items():
        write_text(root / session / "dialog" / "EmoEvaluation" / f"{dialog}.txt", text)
        for line in text.splitlines():
            if line.startswith("["):
                utt = line.split("\t")[1]
                write_wav(root / session / "sentences" / "wav" / dialog / f"{utt}.wav")
    emo = root / "Session1" / "dialog" / "EmoEvaluation"
    write_text(emo / "._Ses01F_impro01.txt", "\x00\x05macOS resource fork")
    write_text(emo / "Categorical" / "Ses01F_impro01_e2_cat.txt", "Ses01F_impro01_F000 :Neutral;")
    write_text(root / "Session1" / "sentences" / "ForcedAlignment" / "Ses01F_impro01"
               / "Ses01F_impro01_F000.wdseg", IEMOCAP_WDSEG)
    write_text(root / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt",
               IEMOCAP_TRANSCRIPT)
    return root


CREMA_FILES = ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1001_TIE_NEU_XX", "1001_IOM_SAD_LO",
               "1002_DFA_FEA_MD", "1002_IWW_DIS_XX", "1002_TAI_ANG_HI", "1003_MTI_NEU_XX")
CREMA_DEMOGRAPHICS = ("ActorID,Age,Sex,Race,Ethnicity\n"
                      "1001,51,Male,Caucasian,Not Hispanic\n"
                      "1002,21,Female,Caucasian,Not Hispanic\n"
                      "1003,21,Female,Caucasian,Not Hispanic\n")


@pytest.fixture
def crema_root(tmp_path: Path) -> Path:
    root = tmp_path / "CREMA-D"
    for name in CREMA_FILES:
        write_wav(root / "AudioWAV" / f"{name}.wav")
    write_text(root / "VideoDemographics.csv", CREMA_DEMOGRAPHICS)
    return root


RAVDESS_FILES = ("Actor_01/03-01-01-01-01-01-01", "Actor_01/03-01-05-02-02-01-01",
                 "Actor_01/03-02-03-01-01-01-01", "Actor_01/01-01-04-01-01-01-01",
                 "Actor_12/03-01-02-01-02-02-12", "Actor_12/03-01-03-02-01-01-12",
                 "Actor_12/03-01-06-01-02-01-12", "Actor_12/03-01-04-01-01-02-12")


@pytest.fixture
def ravdess_root(tmp_path: Path) -> Path:
    root = tmp_path / "RAVDESS"
    for name in RAVDESS_FILES:
        write_wav(root / f"{name}.wav")
    return root


EMODB_FILES = ("03a01Fa", "03a02Wb", "08b01Ta", "08a04Nc", "09b10La", "10a05Ea", "16b09Ab",
               "13a07Nb")


@pytest.fixture
def emodb_root(tmp_path: Path) -> Path:
    root = tmp_path / "emodb"
    for name in EMODB_FILES:
        write_wav(root / "wav" / f"{name}.wav")
    write_text(root / "lablaut" / "03a01Fa.lablaut", "not read")
    return root


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fastser-cache")


@pytest.fixture(scope="session")
def small_synthetic(synthetic_cache):
    """A 40-utterance synthetic corpus (10 voices, 5 sessions), generated once per run."""
    return load_synthetic(cache_dir=synthetic_cache, **SMALL_SYNTHETIC)
