"""The leaderboard (`fastser cv --model all` or a list): one cross-validation per method that
can run, methods that cannot skipped with the reason, the table as Markdown, CSV and JSON and
the comparison plot."""

import csv
import json

import pytest

from fastser import methods
from fastser.cli import main
from fastser.data.synthetic import write_synthetic
from fastser.train.trainer import TrainConfig
from fastser.workflows.cv import confidence_interval
from fastser.workflows.leaderboard import run_leaderboard

TOYS = {"toy": "ToyRecipe", "toy_fitted": "FittedToyRecipe", "toy_needy": "NeedyToyRecipe",
        "toy_failing": "FailingToyRecipe", "toy_frames": "FramesToyRecipe"}


@pytest.fixture(autouse=True)
def toys_registered(monkeypatch):
    for name, cls in TOYS.items():
        monkeypatch.setitem(methods.METHODS, name, f"toy_recipe:{cls}")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "synthetic"
    write_synthetic(folder, utterances=24, speakers=3, seed=2)
    return folder


def test_every_method_that_can_run_in_one_table(tiny_corpus, tmp_path):
    config = TrainConfig(epochs=2, batch_size=8, progress=False, device="cpu")
    names = ["toy", "toy_needy", "toy_fitted", "toy_failing"]
    entries = run_leaderboard(names, tiny_corpus, "speaker", {n: config for n in names},
                              {"toy": {"hidden": 4}}, tmp_path, log=lambda line: None)
    status = {e.method: e.status for e in entries}
    assert status == {"toy": "ran", "toy_fitted": "ran", "toy_needy": "skipped",
                      "toy_failing": "failed"}
    ran = [e for e in entries if e.status == "ran"]
    assert ran[0].summary["ua"]["mean"] >= ran[1].summary["ua"]["mean"]  # best first
    for entry in ran:  # the summary is the method's own cross-validation
        cv = json.loads((tmp_path / entry.method / "cv.json").read_text())
        assert entry.folds == len(cv["folds"]) == len(tiny_corpus.speakers)
        for metric in ("ua", "wa", "macro_f1"):
            mean, half = confidence_interval([f["test"][metric] for f in cv["folds"]])
            assert entry.summary[metric] == {"mean": pytest.approx(mean),
                                             "ci95": pytest.approx(half)}
    assert {e.method: e.settings for e in entries}["toy"] == {"hidden": 4}
    rows = list(csv.DictReader(open(tmp_path / "leaderboard.csv")))
    assert [r["method"] for r in rows] == [e.method for e in entries]
    assert float(rows[0]["ua_mean"]) == pytest.approx(entries[0].summary["ua"]["mean"])
    needy = next(r for r in rows if r["method"] == "toy_needy")
    assert needy["status"] == "skipped" and "lacks what toy_needy needs" in needy["reason"]
    table = (tmp_path / "leaderboard.md").read_text()
    assert "| toy | " in table and "toy_failing (failed): toy_failing: this corpus" in table
    assert json.loads((tmp_path / "leaderboard.json").read_text())["entries"][0]["method"] == \
        entries[0].method
    assert (tmp_path / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_with_several_models(corpus_dir, tmp_path, capsys):
    out = tmp_path / "board"
    argv = ["cv", "--model", "toy,toy_frames,toy_needy", "--data", f"synthetic:{corpus_dir}",
            "--protocol", "speaker", "--out", str(out), "--epochs", "1", "--no-progress",
            "--set", "hidden=4", "--set", "toy_frames.time_masks=1"]
    assert main(argv) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    settings = {e["method"]: e["settings"] for e in board["entries"]}
    assert settings == {"toy": {"hidden": 4}, "toy_frames": {"hidden": 4, "time_masks": 1},
                        "toy_needy": {"hidden": 4}}
    assert "Not run" in capsys.readouterr().out
    assert main(argv) == 2  # the folder holds a leaderboard: nothing is overwritten
    assert "already holds a leaderboard" in capsys.readouterr().err


def test_leaderboard_over_seeds_on_speaker_dependent_folds(corpus_dir, tmp_path, capsys):
    out = tmp_path / "board"
    assert main(["cv", "--model", "toy,toy_fitted", "--data", f"synthetic:{corpus_dir}",
                 "--protocol", "utterance-kfold", "--num-folds", "2", "--seeds", "0-1",
                 "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert [e["status"] for e in board["entries"]] == ["ran", "ran"]
    for entry in board["entries"]:  # each row: the method's own mean over seeds
        folder = out / entry["method"]
        per_seed = [json.loads((folder / f"seed{s}" / "cv.json").read_text()) for s in (0, 1)]
        assert [cv["seed"] for cv in per_seed] == [0, 1]
        assert entry["seeds"] == [0, 1] and entry["folds"] == 2 and entry["speaker_dependent"]
        assert json.loads((folder / "seeds.json").read_text())["seeds"] == [0, 1]
        for metric in ("ua", "wa", "macro_f1"):
            mean, half = confidence_interval([cv["summary"][metric]["mean"] for cv in per_seed])
            assert entry["summary"][metric]["mean"] == pytest.approx(mean)
            assert entry["summary"][metric]["ci95"] == pytest.approx(half)
    assert "mean over seeds 0, 1" in board["title"]
    table = (out / "leaderboard.md").read_text()
    assert "Speaker-dependent" in table and "Speaker-dependent" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--model", "toy,nope"], "unknown model(s) nope"),
    (["--model", "toy,toy_fitted", "--set", "depth=3"], "none of toy, toy_fitted has a setting"),
    (["--model", "toy,toy_fitted", "--set", "glrf.k=0.5"], "'glrf' is not one of the methods"),
    (["--model", "toy,toy_fitted", "--set", "toy.hidden=0"], "toy: setting hidden"),
])
def test_bad_leaderboard_options(argv, message, tmp_path, capsys):
    try:
        code = main(["cv", *argv, "--out", str(tmp_path / "x")])
    except SystemExit as error:  # argparse's own usage errors
        code = error.code
    assert code == 2
    assert message in capsys.readouterr().err
