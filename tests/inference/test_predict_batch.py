"""Batched prediction: Recognizer.predict_batch equals recognising one recording at a time,
`fastser predict` over folders, manifests and wav.scp files writes CSV/JSONL tables with one
row per recording (and per segment), reports unusable recordings and carries on, and a run
over two torchrun processes writes what one process writes."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from fastser.cli import main
from fastser.errors import UserError
from fastser.inference import Recognizer
from fastser.inference.recognizer import length_batches
from random_models import noise, write_wavs
from torchrun import run_two_processes

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def test_length_batches_pack_longest_first_within_the_budget():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 100, (60,), generator=gen).tolist()
    batches = length_batches(lengths, budget=250)
    assert sorted(i for batch in batches for i in batch) == list(range(60))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths, reverse=True)
    for batch in batches:
        longest = lengths[batch[0]]
        assert len(batch) == 1 or len(batch) * longest <= 250
    assert length_batches([300, 10], budget=250) == [[0], [1]]


@pytest.mark.parametrize("method", ["glrf", "stl", "mstr"])
def test_predict_batch_equals_one_at_a_time(method, checkpoints):
    recognizer = Recognizer.from_checkpoint(checkpoints(method))
    waves = [noise(seconds, seed) for seed, seconds in enumerate([0.6, 3.1, 2.0, 5.3, 1.2])]
    batched = recognizer.predict_batch(waves, 16000, batch_seconds=8.0)
    for wave, together in zip(waves, batched):
        alone = recognizer.predict(wave, 16000)
        assert together.label == alone.label
        torch.testing.assert_close(torch.tensor(list(together.scores.values())),
                                   torch.tensor(list(alone.scores.values())), **TOLERANCE)
        assert [(s.start, s.end) for s in together.segments] == \
            [(s.start, s.end) for s in alone.segments]
        for a, b in zip(together.segments, alone.segments):
            torch.testing.assert_close(torch.tensor(list(a.scores.values())),
                                       torch.tensor(list(b.scores.values())), **TOLERANCE)


def test_predict_batch_takes_paths_and_checks_its_arguments(checkpoints, recordings):
    recognizer = Recognizer.from_checkpoint(checkpoints("glrf"))
    paths = [recordings / "a0.wav", recordings / "a2.wav"]
    by_path = recognizer.predict_batch(paths)
    assert [r.label for r in by_path] == [recognizer.predict(p).label for p in paths]
    with pytest.raises(UserError, match="one list of word timings per recording"):
        recognizer.predict_batch(paths, words=[[]])
    with pytest.raises(UserError, match="batch_seconds must be positive"):
        recognizer.predict_batch(paths, batch_seconds=0)


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_predict_folder_to_csv_with_segments_and_failures(checkpoints, recordings, tmp_path,
                                                         capsys):
    folder = tmp_path / "audio"
    write_wavs(folder, [1.0, 4.2, 2.5])
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnothing")
    (folder / "empty.flac").write_bytes(b"")
    out = tmp_path / "predictions.csv"
    checkpoint = checkpoints("glrf")
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder), "--out", str(out),
                 "--segments", "--batch-seconds", "5", "--no-progress"]) == 0
    assert "5 recordings (2 could not be processed)" in capsys.readouterr().err
    rows = _rows(out)
    recognizer = Recognizer.from_checkpoint(checkpoint)
    files = [r for r in rows if r["segment"] == ""]
    assert [r["path"] for r in files] == [str(folder / n) for n in
                                          ("a0.wav", "a1.wav", "a2.wav", "broken.wav",
                                           "empty.flac")]
    assert "cannot decode audio file" in files[3]["error"] and files[3]["label"] == ""
    assert "empty (0 bytes)" in files[4]["error"]
    for row in files[:3]:
        alone = recognizer.predict(row["path"])
        assert row["label"] == alone.label and row["error"] == ""
        for label, score in alone.scores.items():
            assert float(row[f"score_{label}"]) == pytest.approx(score, abs=1e-5)
        segments = [r for r in rows if r["id"] == row["id"] and r["segment"] != ""]
        assert [(float(r["start"]), float(r["end"])) for r in segments] == \
            [(s.start, s.end) for s in alone.segments]
        assert [r["label"] for r in segments] == [s.label for s in alone.segments]
    assert not out.with_name("predictions.csv.partial").exists()


def test_predict_manifest_with_missing_files_to_jsonl(checkpoints, tmp_path, capsys):
    write_wavs(tmp_path, [1.5, 2.5])
    manifest = tmp_path / "list.csv"
    manifest.write_text("id,path\none,a0.wav\nlost,gone.wav\ntwo,a1.wav\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--checkpoint", str(checkpoints("stl")), str(manifest), "--out",
                 str(out), "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["one", "lost", "two"]
    assert "audio file not found" in lines[1]["error"] and "label" not in lines[1]
    assert lines[0]["error"] is None and set(lines[0]["scores"]) == {"neutral", "happy", "sad",
                                                                     "angry"}
    assert "segments" not in lines[0]  # without --segments


def test_predict_window_and_hop_override_the_segments(checkpoints, recordings, capsys):
    path = recordings / "a2.wav"  # 4.2 s
    argv = ["predict", "--checkpoint", str(checkpoints("glrf")), str(path), "--json"]
    assert main(argv) == 0
    default = json.loads(capsys.readouterr().out)[str(path)]["segments"]
    assert main([*argv, "--window", "1.0", "--hop", "0.5"]) == 0
    changed = json.loads(capsys.readouterr().out)[str(path)]["segments"]
    assert [(s["start"], s["end"]) for s in default][:2] == [(0.0, 2.0), (0.4, 2.4)]
    assert [(s["start"], s["end"]) for s in changed] == [(0.5 * k, 0.5 * k + 1.0)
                                                         for k in range(7)]
    assert main(["predict", "--checkpoint", str(checkpoints("stl")), str(path), "--hop", "1",
                 "--json"]) == 0
    pieces = json.loads(capsys.readouterr().out)[str(path)]["segments"]
    assert [(s["start"], s["end"]) for s in pieces] == [(0.0, 3.0), (1.0, 4.0)]
    assert main(["predict", "--checkpoint", str(checkpoints("stl")), str(path), "--window",
                 "3.5"]) == 2
    assert "max_duration (3.5 s) must be at most 3.03 s" in capsys.readouterr().err
    assert main([*argv, "--hop", "0.333"]) == 2
    assert "test_hop (0.333 s) must be a multiple of the 10 ms" in capsys.readouterr().err


@pytest.mark.parametrize("argv_tail, message", [
    (["--segments"], "--segments selects the rows of an --out table"),
    (["--hop", "0.5"], "mstr scores whole utterances"),
    (["--out", "x.txt"], "must end in .csv or .jsonl"),
])
def test_predict_option_errors(checkpoints, recordings, tmp_path, capsys, argv_tail, message):
    if "--out" in argv_tail:
        argv_tail = ["--out", str(tmp_path / "x.txt")]
    assert main(["predict", "--checkpoint", str(checkpoints("mstr")), str(recordings),
                 *argv_tail]) == 2
    assert message in capsys.readouterr().err


def test_predict_bad_inputs_stop_before_any_work(checkpoints, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    checkpoint = str(checkpoints("glrf"))
    assert main(["predict", "--checkpoint", checkpoint, str(empty)]) == 2
    assert "no audio files" in capsys.readouterr().err
    scp = tmp_path / "wav.scp"
    scp.write_text("u1 ffmpeg -i x.mp3 -f wav - |\n")
    assert main(["predict", "--checkpoint", checkpoint, str(scp)]) == 2
    assert "wav.scp:1: u1: piped commands" in capsys.readouterr().err
    out = tmp_path / "taken.csv"
    out.write_text("keep me")
    write_wavs(tmp_path, [1.0])
    assert main(["predict", "--checkpoint", checkpoint, str(tmp_path / "a0.wav"), "--out",
                 str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["predict", "--checkpoint", checkpoint, str(tmp_path / "a0.wav"), "--out",
                 str(out), "--force", "--no-progress"]) == 0
    assert _rows(out)[0]["id"] == str(tmp_path / "a0.wav")


def test_predict_with_the_segments_of_an_utterance_model_is_refused(checkpoints, recordings,
                                                                     tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(checkpoints("transformer")), str(recordings),
                 "--out", str(tmp_path / "p.csv"), "--segments"]) == 2
    assert "--segments: transformer scores whole utterances" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_torchrun_two_processes_write_what_one_process_writes(checkpoints, tmp_path):
    folder = tmp_path / "audio"
    write_wavs(folder, [1.0, 3.4, 2.2, 0.7, 2.9, 5.1, 1.8])
    (folder / "a3.wav").write_bytes(b"not audio")  # a failure in the middle
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    # one recording per batch, so both runs compute every recording alike (bit for bit)
    argv = ["predict", "--checkpoint", str(checkpoints("glrf")), str(folder), "--segments",
            "--batch-seconds", "0.01", "--no-progress"]
    # the same single-threaded environment as the torchrun processes
    subprocess.run([sys.executable, "-m", "fastser", *argv, "--out", str(one)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    run_two_processes("-m", "fastser", *argv, "--out", str(two))
    assert two.read_text() == one.read_text()
    assert [r["path"] for r in _rows(two) if r["segment"] == ""] == \
        [str(folder / f"a{i}.wav") for i in range(7)]
