"""A run folder holds one run: earlier outputs are refused unless --resume or --force, links
are never written through, killed runs' temporary files are cleaned up, and every output is
written atomically."""

import json
import os

import pytest
import torch

from fastser.checkpoint import load_checkpoint
from fastser.errors import PathExistsError, StorageError
from fastser.outputs import TEMP_SUFFIX, atomic_file, write_json, write_text
from fastser.workflows.run_folder import LOCK, claim, earlier_outputs
from faults.helpers import copy_run, run_command, train_argv, user_error


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("kept", [("best.pt", "results.json"), ("metrics.jsonl",),
                                  ("confusion.png",)])
def test_train_refuses_a_folder_with_an_earlier_runs_outputs(kept, trained_run, corpus_source,
                                                            tmp_path, capsys):
    """No last.pt, but best.pt and results.json (or any one output) of an earlier run."""
    out = tmp_path / "run"
    out.mkdir()
    for name in kept:
        (out / name).write_bytes((trained_run / name).read_bytes())
    before = _snapshot(out)
    line = user_error(train_argv(corpus_source, out), capsys)
    assert "already holds an earlier run" in line and kept[0] in line
    assert "--resume" in line and "--force" in line
    assert _snapshot(out) == before


def test_train_refuses_a_cv_folder(trained_run, corpus_source, tmp_path, capsys):
    cv = tmp_path / "cv"
    copy_run(trained_run, cv / "fold01")
    write_json(cv / "cv.json", {"folds": []})
    before = _snapshot(cv)
    line = user_error(train_argv(corpus_source, cv), capsys)
    assert "cv.json" in line and "fold01" in line
    assert _snapshot(cv) == before


def test_cv_refuses_a_training_folder(trained_run, corpus_source, tmp_path, capsys):
    out = copy_run(trained_run, tmp_path / "run")
    before = _snapshot(out)
    line = user_error(["cv", "--model", "toy", "--data", corpus_source, "--out", str(out),
                       "--epochs", "1", "--no-progress"], capsys)
    assert "already holds an earlier run" in line
    assert _snapshot(out) == before


def test_force_replaces_only_the_earlier_runs_outputs(corpus_source, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"an earlier run's best model")
    (out / "results.json").write_text("{}")
    (out / "notes.txt").write_text("the user's own file")
    status, _ = run_command(train_argv(corpus_source, out, "--force"), capsys)
    assert status == 0
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert load_checkpoint(out / "best.pt")["recipe"] == "toy"
    assert {p.name for p in out.iterdir()} == {"notes.txt", "best.pt", "last.pt",
                                               "metrics.jsonl", "results.json", "confusion.png"}


def test_force_never_deletes_other_runs_in_subfolders(trained_run, corpus_source, tmp_path,
                                                      capsys):
    """`--out runs --force` over runs/glrf/...: the runs inside are not this folder's run."""
    runs = tmp_path / "runs"
    copy_run(trained_run, runs / "glrf")
    before = _snapshot(runs)
    line = user_error(train_argv(corpus_source, runs, "--force"), capsys)
    assert "holds the outputs of other runs in subfolders (glrf/best.pt" in line
    assert _snapshot(runs) == before


def test_cv_force_replaces_its_folds(trained_run, corpus_source, tmp_path, capsys):
    cv = tmp_path / "cv"
    for fold in ("fold01", "fold02", "fold03"):  # an earlier cv with one fold more
        copy_run(trained_run, cv / fold)
    write_json(cv / "cv.json", {"folds": []})
    status, _ = run_command(["cv", "--model", "toy", "--data", corpus_source, "--out", str(cv),
                             "--protocol", "session", "--epochs", "1", "--no-progress",
                             "--force"], capsys)
    assert status == 0
    folds = json.loads((cv / "cv.json").read_text())["folds"]
    assert sorted(p.name for p in cv.glob("fold*")) == [f"fold{i + 1:02d}"
                                                       for i in range(len(folds))]


def test_runs_nested_deeper_are_not_this_folders_business(trained_run, corpus_source,
                                                         tmp_path, capsys):
    out = tmp_path / "project"
    copy_run(trained_run, out / "runs" / "old")  # two levels down: never written by a run
    assert run_command(train_argv(corpus_source, out), capsys)[0] == 0
    assert _snapshot(out / "runs" / "old") == _snapshot(trained_run)


@pytest.mark.parametrize("where", ["last.pt", "metrics.jsonl", "fold01"])
def test_links_inside_the_run_folder_are_refused(where, corpus_source, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious"
    target.write_text("not fastser's")
    out = tmp_path / "run"
    out.mkdir()
    os.symlink(outside if where == "fold01" else target, out / where)
    line = user_error(train_argv(corpus_source, out), capsys)
    assert "symbolic link" in line and where in line
    assert target.read_text() == "not fastser's" and os.listdir(outside) == ["precious"]


def test_the_out_folder_itself_may_be_a_link(corpus_source, tmp_path, capsys):
    real = tmp_path / "big-disk" / "run"
    real.mkdir(parents=True)
    os.symlink(real, tmp_path / "run")
    status, _ = run_command(train_argv(corpus_source, tmp_path / "run"), capsys)
    assert status == 0 and (real / "last.pt").is_file()


def test_stale_temporary_files_are_removed_on_the_next_start(trained_run, corpus_source,
                                                            tmp_path, capsys):
    out = copy_run(trained_run, tmp_path / "run")
    stale = [out / f".last.pt.x1y2{TEMP_SUFFIX}", out / f".results.json.abc{TEMP_SUFFIX}",
             out / ".last.pt.k3j4.tmp", out / "metrics.jsonl.tmp"]  # and those of 0.1
    for path in stale:
        path.write_bytes(b"half written")
    (out / "notes.tmp").write_text("the user's")
    status, _ = run_command(train_argv(corpus_source, out, "--resume", "--epochs", "2",
                                       "--force"), capsys)
    assert status == 0
    assert not any(path.exists() for path in stale)
    assert (out / "notes.tmp").exists() and not (out / LOCK).exists()


def test_the_lock_is_released_after_a_refused_run(trained_run, corpus_source, tmp_path, capsys):
    out = copy_run(trained_run, tmp_path / "run")
    user_error(train_argv(corpus_source, out), capsys)
    assert not (out / LOCK).exists()
    with claim(out, resume=True):
        pass


def test_claim_lists_the_outputs_it_knows(trained_run, tmp_path):
    out = copy_run(trained_run, tmp_path / "run")
    assert {p.name for p in earlier_outputs(out)} == {
        "best.pt", "last.pt", "metrics.jsonl", "results.json", "confusion.png"}
    with pytest.raises(PathExistsError):
        with claim(out):
            pass


# -- the atomic writer -------------------------------------------------------------------------

def test_atomic_writes_replace_whole_files_or_nothing(tmp_path):
    path = write_text(tmp_path / "table.md", "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(path) as file:
            file.write(b"half of the new ")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["table.md"]
    write_json(path, {"new": 1})
    assert json.loads(path.read_text()) == {"new": 1}


def test_the_atomic_writer_never_writes_through_a_link(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text("keep")
    os.symlink(target, tmp_path / "results.json")
    with pytest.raises(StorageError, match="symbolic link"):
        write_json(tmp_path / "results.json", {})
    assert target.read_text() == "keep"


# -- export ------------------------------------------------------------------------------------

def test_export_refuses_an_existing_sidecar_without_force(trained_run, tmp_path, capsys):
    program = tmp_path / "model.pt2"
    sidecar = tmp_path / "model.pt2.json"
    sidecar.write_text('{"an earlier": "export"}')
    argv = ["export", "--checkpoint", str(trained_run / "best.pt"), "--out", str(program),
            "--format", "export"]
    line = user_error(argv, capsys)
    assert str(sidecar) in line and "--force" in line
    assert sidecar.read_text() == '{"an earlier": "export"}' and not program.exists()
    status, _ = run_command(argv + ["--force"], capsys)
    assert status == 0 and json.loads(sidecar.read_text())["model"] == "toy"
    torch.export.load(str(program))


def test_export_never_writes_through_a_link(trained_run, tmp_path, capsys):
    target = tmp_path / "precious"
    target.write_text("keep")
    os.symlink(target, tmp_path / "model.ts")
    line = user_error(["export", "--checkpoint", str(trained_run / "best.pt"), "--out",
                       str(tmp_path / "model.ts"), "--force"], capsys)
    assert "symbolic link" in line and target.read_text() == "keep"
