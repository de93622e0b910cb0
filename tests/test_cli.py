"""The `fastser` command on tiny runs (a toy recipe registered for the test, the small
synthetic corpus), and its errors: bad paths, options, corrupt or foreign checkpoints."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

import optest
from fastser.cli import main
from fastser.data.synthetic import write_synthetic
from fastser import methods

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "synthetic"
    write_synthetic(folder, utterances=24, speakers=4, seed=2)
    return folder


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "toy", "toy_recipe:ToyRecipe")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_dir):
    out = tmp_path_factory.mktemp("run") / "toy"
    with pytest.MonkeyPatch.context() as patch:  # registered for this module's tests only
        patch.setitem(methods.METHODS, "toy", "toy_recipe:ToyRecipe")
        assert main(["train", "--model", "toy", "--data", f"synthetic:{corpus_dir}", "--out",
                     str(out), "--epochs", "2", "--batch-size", "4", "--no-progress"]) == 0
    return out


def test_train_writes_the_run(trained):
    for name in ("last.pt", "best.pt", "metrics.jsonl", "results.json", "confusion.png"):
        assert (trained / name).is_file(), name
    results = json.loads((trained / "results.json").read_text())
    assert results["model"] == "toy" and results["epochs_run"] == 2
    assert set(results["test_speakers"]).isdisjoint(
        torch.load(trained / "last.pt", weights_only=True)["run"]["test_speakers"][:0])
    assert 0 <= results["test"]["ua"] <= 1


def test_train_refuses_to_overwrite_and_resume_needs_a_run(trained, corpus_dir, tmp_path, capsys):
    before = (trained / "last.pt").read_bytes()
    assert main(["train", "--model", "toy", "--data", f"synthetic:{corpus_dir}", "--out",
                 str(trained), "--epochs", "1", "--no-progress"]) == 2
    assert "already holds an earlier run" in capsys.readouterr().err
    assert (trained / "last.pt").read_bytes() == before
    assert main(["train", "--model", "toy", "--data", f"synthetic:{corpus_dir}", "--out",
                 str(tmp_path / "none"), "--resume"]) == 2
    assert "no last.pt" in capsys.readouterr().err


def test_resume_with_another_model_is_refused(trained, corpus_dir, monkeypatch, capsys):
    monkeypatch.setitem(methods.METHODS, "toy2", "toy_recipe:OtherToyRecipe")
    assert main(["train", "--model", "toy2", "--data", f"synthetic:{corpus_dir}", "--out",
                 str(trained), "--resume", "--no-progress"]) == 2
    assert "holds a 'toy' model, not 'toy2'" in capsys.readouterr().err


def test_eval_on_the_runs_test_speakers(trained, capsys):
    assert main(["eval", "--checkpoint", str(trained / "best.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((trained / "results.json").read_text())["test"]
    assert result["ua"] == pytest.approx(saved["ua"])


def test_predict_files_and_errors(trained, corpus_dir, capsys):
    wav = next((corpus_dir / "wav").iterdir())
    assert main(["predict", "--checkpoint", str(trained / "best.pt"), str(wav), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)[str(wav)]
    assert out["label"] in ("neutral", "happy", "sad", "angry")
    assert sum(out["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert main(["predict", "--checkpoint", str(trained / "best.pt"), "/no/such.wav"]) == 2
    assert "not found: /no/such.wav" in capsys.readouterr().err


def test_export_torchscript_runs_without_fastser(trained, tmp_path):
    """The file runs in a process that only loads fastser's library (with the reference
    backend, which has no library, in one that imports fastser)."""
    path = tmp_path / "toy.ts"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", "--checkpoint", str(trained / "best.pt"), "--out", str(path)]) == 0
    assert not [w for w in caught if "torch.jit" in str(w.message)]  # torch's notices are not ours
    reference = optest.reference_backend()
    load = ("import fastser" if reference else
            f"torch.ops.load_library({__import__('fastser').ops.library_path()!r})")
    code = f"""
import sys, torch
{load}
m = torch.jit.load({str(path)!r})
print(m(torch.randn(2, 8)).sum(dim=1).tolist())
assert ("fastser" in sys.modules) == {reference}
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == pytest.approx([1.0, 1.0])
    assert main(["export", "--checkpoint", str(trained / "best.pt"), "--out", str(path)]) == 2


def test_export_program(trained, tmp_path):
    path = tmp_path / "toy.pt2"
    assert main(["export", "--checkpoint", str(trained / "best.pt"), "--out", str(path),
                 "--format", "export"]) == 0
    program = torch.export.load(str(path))
    assert program.module()(torch.randn(3, 8)).shape == (3, 3 + 1)


def test_cv_writes_folds_and_summary(corpus_dir, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["cv", "--model", "toy", "--data", f"synthetic:{corpus_dir}", "--out", str(out),
                 "--protocol", "session", "--epochs", "1", "--no-progress"]) == 0
    summary = json.loads((out / "cv.json").read_text())
    assert len(summary["folds"]) == 2 and "ua" in summary["summary"]
    assert (out / "confusion.png").is_file() and (out / "fold01" / "confusion.png").is_file()
    assert "±" in capsys.readouterr().out


def test_cv_over_seeds_on_speaker_dependent_folds(corpus_dir, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["cv", "--model", "toy", "--data", f"synthetic:{corpus_dir}", "--out", str(out),
                 "--protocol", "utterance-kfold", "--num-folds", "2", "--seeds", "0-1",
                 "--epochs", "1", "--no-progress"]) == 0
    seeds = json.loads((out / "seeds.json").read_text())
    assert seeds["seeds"] == [0, 1] and seeds["speaker_dependent"]
    per_seed = [json.loads((out / f"seed{s}" / "cv.json").read_text()) for s in (0, 1)]
    assert [len(cv["folds"]) for cv in per_seed] == [2, 2]
    assert [cv["seed"] for cv in per_seed] == [0, 1]
    assert all(f["speaker_dependent"] and f["num_folds"] == 2 for f in per_seed[0]["folds"])
    ua = [cv["summary"]["ua"]["mean"] for cv in per_seed]
    assert seeds["summary"]["ua"]["mean"] == pytest.approx(sum(ua) / 2)
    assert "speaker-dependent" in (out / "seed0" / "cv.md").read_text().lower()
    assert "speaker-dependent" in capsys.readouterr().out


def test_eval_rebuilds_a_kfold_split(corpus_dir, tmp_path, capsys):
    out = tmp_path / "kfold"
    assert main(["train", "--model", "toy", "--data", f"synthetic:{corpus_dir}", "--out",
                 str(out), "--protocol", "utterance-kfold-val", "--num-folds", "4", "--fold",
                 "3", "--epochs", "1", "--no-progress"]) == 0
    assert "speaker-dependent" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["speaker_dependent"] and saved["split"] == \
        "utterance fold 3/4 (speaker-dependent)"
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ua"] == pytest.approx(saved["test"]["ua"])


def test_synth_writes_a_readable_corpus(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--utterances", "8", "--speakers", "2"]) == 0
    assert len(list((out / "wav").iterdir())) == 8
    assert main(["synth", "--out", str(out), "--utterances", "8", "--speakers", "2"]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "toy", "--data", "emodb:/no/such/dir", "--out", "x"], "does not exist"),
    (["train", "--model", "toy", "--data", "timit:/x", "--out", "x"], "unknown corpus"),
    (["train", "--model", "toy", "--out", "x", "--set", "novalue"], "KEY=VALUE"),
    (["eval", "--checkpoint", "/no/such.pt"], "does not exist"),
    (["bench", "--suite", "nope"], "unknown suite"),
    (["train", "--model", "glrf", "--out", "x", "--set", "k=abc"],
     "glrf: setting k: expected number in (0, 1], got 'abc'"),
    (["train", "--model", "glrf", "--out", "x", "--set", "blocks=true"],
     "glrf: setting blocks: expected integer in [1, inf), got True"),
    (["train", "--model", "glrf", "--out", "x", "--set", "hop=0.3"], "unknown setting hop"),
    (["train", "--model", "glrf", "--out", "x", "--preset", "paper-2099"],
     "--preset paper-2099: glrf has the presets demo, paper"),
    (["cv", "--model", "toy", "--out", "x", "--epochs", "0"],
     "training option epochs (--epochs): expected an integer >= 1, got 0"),
    (["cv", "--model", "toy", "--out", "x", "--seeds", "3-1"], "--seeds '3-1': expected"),
    (["cv", "--model", "toy", "--out", "x", "--seeds", "1,1"], "listed twice"),
    (["cv", "--model", "toy", "--out", "x", "--seeds", "0-2", "--seed", "1"],
     "--seed and --seeds"),
    (["cv", "--model", "toy", "--out", "x", "--data-option", "classes"], "KEY=VALUE"),
    (["cv", "--model", "toy", "--out", "x", "--protocol", "leave-one-out"],
     "unknown protocol 'leave-one-out'"),
    (["train", "--model", "toy", "--out", "x", "--optimizer", "sgd"],
     "optimizer"),
])
def test_bad_inputs_give_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_corrupt_checkpoint_is_reported(trained, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes((trained / "best.pt").read_bytes()[:500])
    assert main(["predict", "--checkpoint", str(bad), __file__]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_an_internal_error_keeps_its_traceback(corpus_dir, tmp_path, monkeypatch):
    """A bug (not a user's mistake) is not turned into a one-line error: it propagates, so the
    command shows the traceback and exits with status 1."""
    import toy_recipe

    def broken(self, model, batch):
        raise RuntimeError("a bug deep inside a model")

    monkeypatch.setattr(toy_recipe.ToyRecipe, "loss", broken)
    with pytest.raises(RuntimeError, match="a bug deep inside a model"):
        main(["train", "--model", "toy", "--data", f"synthetic:{corpus_dir}", "--out",
              str(tmp_path / "run"), "--epochs", "1", "--no-progress"])
    # (on the reference ops, their import warning is not part of the error)
    quiet = ["-W", "ignore::UserWarning"] if optest.reference_backend() else []
    proc = subprocess.run([sys.executable, *quiet, "-m", "fastser", "train", "--model", "glrf",
                           "--out", str(tmp_path / "x"), "--set", "k=2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


def test_the_executable_prints_a_warning_once_in_one_line(monkeypatch, capsys):
    from fastser.cli import about, console

    def warns(args):
        for _ in range(2):
            with warnings.catch_warnings():  # as fastser's own code does: Python shows it again
                warnings.warn("the SSL front end has RANDOM weights", UserWarning)
        return 0

    monkeypatch.setattr(about, "_info", warns)
    assert console(["info"]) == 0
    assert capsys.readouterr().err == "fastser: warning: the SSL front end has RANDOM weights\n"


def test_settings_lists_every_setting_with_its_default_and_the_presets(capsys):
    from fastser.methods.glrf import GLRFSettings

    assert main(["settings", "glrf"]) == 0
    out = capsys.readouterr().out
    for name, _, default, _ in GLRFSettings.describe():
        assert f"  {name} " in out and default in out
    assert "preset demo" in out and "channels=48" in out
    assert main(["settings", "glrf", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in listed["settings"]} == set(GLRFSettings.fields())
    assert listed["presets"]["demo"]["training"]["epochs"] == 8


def test_preset_and_demo_settings_are_the_same_starting_point(corpus_dir, tmp_path):
    from fastser.cli import build_parser
    from fastser.cli.training import _train_config

    def parsed(*extra):
        return _train_config(build_parser().parse_args(
            ["train", "--model", "glrf", "--out", str(tmp_path), *extra]))

    assert parsed("--preset", "demo") == parsed("--demo-settings")
    config, settings = parsed("--preset", "demo", "--epochs", "3", "--set", "channels=32")
    assert config.epochs == 3 and config.lr == 2e-3  # the option wins over the preset
    assert settings == {"channels": 32, "blocks": 2, "heads": 4, "speaker_norm": False}
    config, settings = parsed("--epochs", "3")  # no preset: the method's training defaults
    assert config.epochs == 3 and config.select == "last" and settings == {}


def test_help_everywhere():
    for command in ("train", "eval", "cv", "predict", "export", "bench", "info", "settings",
                    "demo", "synth"):
        args = [command, "glrf"] if command == "settings" else [command]
        proc = subprocess.run([sys.executable, "-m", "fastser", *args, "--help"],
                              capture_output=True, text=True)
        assert proc.returncode == 0 and "usage: fastser" in proc.stdout, command


def test_recognizer_python_api(trained, corpus_dir):
    import fastser

    recognizer = fastser.Recognizer.from_checkpoint(trained / "best.pt")
    wav = next((corpus_dir / "wav").iterdir())
    from_path = recognizer.predict(wav)
    import soundfile
    samples, rate = soundfile.read(wav, dtype="float32")
    from_array = recognizer.predict(samples, sample_rate=rate)
    assert from_path.label == from_array.label
    assert from_path.scores == pytest.approx(from_array.scores)
    with pytest.raises(ValueError, match="sample_rate"):
        recognizer.predict(samples)
