"""The five methods through the user-facing paths, on tiny runs of the synthetic corpus:
`fastser train`, `fastser export` in both formats with round trips on a batch of other
lengths (and the TorchScript file in a process without fastser's Python package), `fastser
predict` on the real pyannote recording and on synthetic audio, the Python Recognizer; and,
for one method, kill-and-resume and 2-process DDP through the command itself."""

import json
import os
import subprocess
import sys

import pytest
import torch

from fastser.audio.alignment import WordTiming
from fastser.audio.io import load_audio
from fastser.cli import main
from fastser.checkpoint import load_checkpoint
from fastser.data.synthetic import read_synthetic, write_synthetic
from fastser.inference import Recognizer, load_trained
from fastser.workflows.demo import DEMO_MODELS, check_exports_in_fresh_process
from sigkill import killed_run_code
from torchrun import run_two_processes

# The method the process-level tests (SIGKILL + --resume, torchrun) train through the command.
PROCESS_METHOD = "mstr"
PROCESS_SETTINGS = ["--demo-settings", "--batch-size", "8", "--no-progress", "--set", "dropout=0.0"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "synthetic"
    write_synthetic(folder, utterances=32, speakers=4, seed=5)
    return folder


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return read_synthetic(corpus_dir)


@pytest.fixture(scope="module", params=DEMO_MODELS)
def run(request, corpus_dir, tmp_path_factory):
    """(method, run folder) of a one-epoch `fastser train` with the demo settings."""
    out = tmp_path_factory.mktemp("runs") / request.param
    assert main(["train", "--model", request.param, "--data", f"synthetic:{corpus_dir}",
                 "--out", str(out), "--demo-settings", "--epochs", "1", "--no-progress"]) == 0
    return request.param, out


def _words_file(tmp_path, words):
    path = tmp_path / "words.json"
    path.write_text(json.dumps([[w.word, w.start, w.end] for w in words]))
    return path


def test_checkpoint_loads_with_weights_only(run):
    method, out = run
    payload = torch.load(out / "best.pt", weights_only=True)
    assert payload["recipe"] == method
    assert load_trained(out / "best.pt", method=method).recipe.name == method


def test_exports_round_trip_on_other_lengths(run, corpus, tmp_path, capsys):
    method, out = run
    script, program = tmp_path / "model.ts", tmp_path / "model.pt2"
    assert main(["export", "--checkpoint", str(out / "best.pt"), "--out", str(script)]) == 0
    assert main(["export", "--checkpoint", str(out / "best.pt"), "--out", str(program),
                 "--format", "export"]) == 0
    trained = load_trained(out / "best.pt")
    # three utterances of other lengths than the example batch the export was traced on
    batch = trained.recipe.collate(trained.recipe.featurize(list(corpus)[:3]))
    inputs = trained.recipe.export_inputs(batch)
    with torch.no_grad():
        expected = trained.recipe.export_module(trained.model).eval()(*inputs)
        assert expected.shape == (3, len(trained.recipe.label_names))
        assert bool(((expected >= 0) & (expected <= 1)).all())  # class scores (GLRF: one-vs-rest)
        torch.testing.assert_close(torch.jit.load(str(script))(*inputs), expected)
        if method == "can":
            # torch.export unrolls LSTMs over time, so CAN's program keeps the exported word
            # count and frames per word (documented in fastser/export.py)
            inputs = trained.recipe.export_inputs(trained.recipe.example_batch())
            expected = trained.recipe.export_module(trained.model).eval()(*inputs)
        torch.testing.assert_close(torch.export.load(str(program)).module()(*inputs), expected)
    check_exports_in_fresh_process([{"export": str(script)}])


def test_predict_real_and_synthetic_audio(run, corpus, sample_path, sample_audio, tmp_path,
                                          capsys):
    method, out = run
    recognizer = Recognizer.from_checkpoint(out / "best.pt")
    utterance = list(corpus)[0]
    # word timings for the audio-text model: the synthetic ones, and 0.4 s pseudo-words over
    # the real recording (unknown words take the unknown token)
    recording_words = [WordTiming(f"word{i}", 0.4 * i, 0.4 * (i + 1)) for i in range(70)]
    for path, words in ((utterance.path, utterance.words), (sample_path, recording_words)):
        argv = ["predict", "--checkpoint", str(out / "best.pt"), str(path), "--json"]
        if method == "can":
            argv += ["--words", str(_words_file(tmp_path, words))]
        capsys.readouterr()
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out)[str(path)]
        assert result["label"] in recognizer.labels
        assert all(0.0 <= score <= 1.0 for score in result["scores"].values())
        assert result["label"] == max(result["scores"], key=result["scores"].get)
        seconds = load_audio(path).shape[-1] / 16000
        spans = recognizer.recipe.segment_spans(round(seconds * 16000)) or []
        assert len(result["segments"]) == len(spans)
        for segment in result["segments"]:
            assert 0 <= segment["start"] < segment["end"]
            assert segment["start"] < seconds
    # the Python API on the in-memory waveform agrees with the command on the file
    api = recognizer.predict(sample_audio, 16000,
                             words=recording_words if method == "can" else None)
    for label, score in api.scores.items():
        assert score == pytest.approx(result["scores"][label], abs=1e-5)


KILLED_TRAIN = """
    from fastser.cli import main
    main({argv!r})
"""


def _train_argv(corpus_dir, out, epochs):
    return ["train", "--model", PROCESS_METHOD, "--data", f"synthetic:{corpus_dir}", "--out",
            str(out), "--epochs", str(epochs), *PROCESS_SETTINGS]


def _same_weights(a, b, **tolerance):
    first, second = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert first.keys() == second.keys()
    for key, value in first.items():
        torch.testing.assert_close(second[key], value, **tolerance, msg=key)


def test_command_resumes_a_killed_run_exactly(corpus_dir, tmp_path):
    assert main(_train_argv(corpus_dir, tmp_path / "straight", 3)) == 0
    killed = tmp_path / "killed"
    code = killed_run_code(1, KILLED_TRAIN.format(argv=_train_argv(corpus_dir, killed, 3)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert load_checkpoint(killed / "last.pt")["epoch"] == 0  # epoch 2's write never landed
    assert main(_train_argv(corpus_dir, killed, 3) + ["--resume"]) == 0
    _same_weights(tmp_path / "straight" / "last.pt", killed / "last.pt", rtol=0, atol=0)


def test_torchrun_two_processes_match_one(corpus_dir, tmp_path):
    assert main(_train_argv(corpus_dir, tmp_path / "one", 2)) == 0
    run_two_processes("-m", "fastser", *_train_argv(corpus_dir, tmp_path / "two", 2))
    _same_weights(tmp_path / "one" / "last.pt", tmp_path / "two" / "last.pt",
                  rtol=1e-4, atol=1e-5)


def test_demo_command_trains_exports_and_tables(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--models", f"{PROCESS_METHOD},glrf", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "demo.json").read_text())["rows"]
    assert [r["model"] for r in rows] == [PROCESS_METHOD, "glrf"]
    for row in rows:  # each row is the method's results.json plus the demo's columns
        assert 0.0 <= row["test"]["ua"] <= 1.0 and row["step_speedup"] > 0
        results = json.loads((out / row["model"] / "results.json").read_text())
        assert {key: row[key] for key in results} == results
        assert os.path.exists(row["export"])
        assert row["model"] in printed
    assert "fused-vs-reference step" in (out / "demo.md").read_text()
