"""Your own data through the command line: `fastser data check / convert`, training, cross-
validation and evaluation on a folder of wav files plus a CSV, with a chosen class set, a
fold file, and a regression-only (arousal) manifest; and the one-line errors of bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastser import methods
from fastser.cli import main
from fastser.data.manifest import read_manifest
from fastser.data.synthetic import read_synthetic, write_synthetic

SMALL = ["--set", "embed_dim=16", "--set", "num_heads=2", "--set", "num_blocks=1",
         "--set", "ffn_dim=16"]


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "toy", "toy_recipe:ToyRecipe")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder of wav files (the synthetic corpus, 24 utterances of 4 voices) with m.csv
    (path, label as 'excited' for happy, speaker, session, arousal), arousal.csv (no label),
    folds.csv (id -> fold by speaker pair) and the written corpus under corpus/."""
    root = tmp_path_factory.mktemp("own-data")
    corpus = write_synthetic(root / "corpus", utterances=24, speakers=4, seed=2)
    rows, regression, folds = ["path,label,speaker,session,arousal"], ["path,speaker,arousal"], \
        ["id,fold"]
    for u in corpus:
        path = u.path.relative_to(root).as_posix()
        label = "excited" if u.label == "happy" else u.label
        rows.append(f"{path},{label},{u.speaker},{u.session},{u.arousal}")
        regression.append(f"{path},{u.speaker},{u.arousal}")
        folds.append(f"{path[:-4]},{1 + corpus.speakers.index(u.speaker) // 2}")
    for name, lines in (("m.csv", rows), ("arousal.csv", regression), ("folds.csv", folds)):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_data_check_reports_what_a_user_reads_before_training(data, capsys):
    assert main(["data", "check", f"manifest:{data / 'm.csv'}", "--label-map", "excited=happy",
                 "--labels", "neutral,happy,sad,angry", "--folds", str(data / "folds.csv")]) == 0
    out = capsys.readouterr().out
    assert f"manifest:{data / 'm.csv'}: 24 utterances," in out and "4 speakers" in out
    assert "labels    neutral 7, happy 5, sad 5, angry 7" in out
    assert "affect    valence 0, arousal 24, dominance 0" in out
    assert "glrf         yes" in out
    assert "can          no: cuts the audio at words" in out
    assert "sap          no: its targets include valence, which 24 of 24" in out
    assert "folds (2):" in out and "fold 1: train 6, validation 6, test 12" in out
    assert main(["data", "check", f"synthetic:{data / 'corpus'}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["utterances"] == 24 and report["methods"]["mmtl"] == []
    assert report["summary"]["hours"] > 0 and report["folds"] is None


def test_data_convert_writes_a_manifest_that_reads_back(data, tmp_path, capsys):
    out = tmp_path / "corpus.jsonl"
    assert main(["data", "convert", f"synthetic:{data / 'corpus'}", "--out", str(out)]) == 0
    assert "wrote 24 utterances" in capsys.readouterr().out
    original = read_synthetic(data / "corpus")
    assert read_manifest(out).utterances == original.utterances
    assert main(["data", "convert", f"synthetic:{data / 'corpus'}", "--out", str(out),
                 "--labels", "sad,angry"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["data", "convert", f"synthetic:{data / 'corpus'}", "--out", str(out),
                 "--labels", "sad,angry", "--force"]) == 0
    assert {u.label for u in read_manifest(out)} == {"sad", "angry"}


def test_train_and_eval_keep_the_chosen_classes(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "toy", "--data", f"manifest:{data / 'm.csv'}",
                 "--label-map", "excited=happy", "--labels", "sad,happy,neutral", "--out",
                 str(out), "--epochs", "2", "--batch-size", "4", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == ["sad", "happy", "neutral"]
    assert len(results["test"]["confusion"]) == 3
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ua"] == pytest.approx(results["test"]["ua"])
    # another corpus is mapped onto the model's classes by name ...
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--data",
                 f"synthetic:{data / 'corpus'}", "--labels", "neutral,sad", "--split", "all",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["confusion"]) == 3
    # ... and refused when it holds a class the model does not know
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--data",
                 f"synthetic:{data / 'corpus'}", "--split", "all"]) == 2
    assert "does not know ['angry']" in capsys.readouterr().err


def test_cv_on_the_folds_of_a_fold_file(data, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["cv", "--model", "toy", "--data", f"manifest:{data / 'm.csv'}", "--folds",
                 str(data / "folds.csv"), "--out", str(out), "--epochs", "1",
                 "--no-progress"]) == 0
    cv = json.loads((out / "cv.json").read_text())
    assert cv["protocol"] == "folds" and [f["split"] for f in cv["folds"]] == ["fold 1",
                                                                             "fold 2"]
    assert [len(f["test_speakers"]) for f in cv["folds"]] == [2, 2]
    assert "the folds of" in capsys.readouterr().out
    one = tmp_path / "one"
    assert main(["train", "--model", "toy", "--data", f"manifest:{data / 'm.csv'}", "--folds",
                 str(data / "folds.csv"), "--fold", "2", "--out", str(one), "--epochs", "1",
                 "--no-progress"]) == 0
    result = json.loads((one / "results.json").read_text())
    assert result["split"] == "fold 2" and result["folds"] == str(data / "folds.csv")
    assert result["test_speakers"] == cv["folds"][1]["test_speakers"]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(one / "best.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["wa"] == pytest.approx(result["test"]["wa"])


def test_regression_only_manifest_trains_scores_and_predicts_arousal(data, tmp_path, capsys):
    out = tmp_path / "arousal"
    assert main(["train", "--model", "transformer", "--data", f"manifest:{data / 'arousal.csv'}",
                 "--set", "targets=[\"arousal\"]", *SMALL, "--out", str(out), "--epochs", "2",
                 "--batch-size", "4", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "arousal_ccc" in printed and "ua" not in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) == {"ccc", "arousal_ccc", "arousal_pearson", "arousal_mae"}
    assert results["labels"] == [] and not (out / "confusion.png").exists()
    wav = sorted((data / "corpus" / "wav").iterdir())[0]
    assert main(["predict", "--checkpoint", str(out / "best.pt"), str(wav), "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out)[str(wav)]
    assert prediction["label"] is None and set(prediction["affect"]) == {"arousal"}
    assert main(["cv", "--model", "transformer", "--data", f"manifest:{data / 'arousal.csv'}",
                 "--set", "targets=[\"arousal\"]", *SMALL, "--folds", str(data / "folds.csv"),
                 "--out", str(tmp_path / "cv"), "--epochs", "1", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())["summary"]
    assert set(summary) == {"ccc", "arousal_ccc", "arousal_pearson", "arousal_mae"}
    assert "arousal_ccc" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "toy", "--labels", "sad,,happy"], "--labels expects class names"),
    (["train", "--model", "toy", "--label-map", "a=b,c"], "--label-map expects OLD=NEW pairs"),
    (["train", "--model", "toy", "--labels", "sad,joy"], r"unknown label\(s\) \['joy'\]"),
    (["train", "--model", "toy", "--label-map", "joy=happy"], r"label map names \['joy'\]"),
    (["train", "--model", "toy", "--folds", "{folds}", "--protocol", "session"],
     "pass either --folds or --protocol"),
    (["train", "--model", "toy", "--folds", "{folds}", "--fold", "3"],
     "--fold 3: the fold file .* has folds 1..2"),
    (["eval", "--checkpoint", "x.pt", "--labels", "sad,happy"],
     "--labels, --label-map and --data-option apply to --data"),
    (["data", "check", "manifest:{data}/none.csv"], "manifest .*none.csv does not exist"),
])
def test_bad_options_are_one_line_errors(data, tmp_path, capsys, argv, message):
    argv = [a.format(folds=data / "folds.csv", data=data) for a in argv]
    if argv[0] == "train":
        argv += ["--data", f"manifest:{data / 'm.csv'}", "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
