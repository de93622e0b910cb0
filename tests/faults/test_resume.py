"""--resume continues the stored run or refuses, listing every difference: another corpus,
split, seed, model or setting is never continued under the old run's name; --force lets only
the safe differences through (more epochs, another device)."""

import json
import os

import pytest

from fastser.checkpoint import load_checkpoint, save_checkpoint
from fastser.errors import ResumeMismatchError
from fastser.train.resume import SAFE_OPTIONS, differences
from fastser.train.trainer import TrainConfig, Trainer
from faults.helpers import copy_run, run_command, train_argv, user_error
from toy_recipe import LABELS, ToyRecipe, make_items


@pytest.fixture()
def run(trained_run, tmp_path):
    return copy_run(trained_run, tmp_path / "run")


def _refused(argv, run, capsys) -> str:
    before = (run / "last.pt").read_bytes()
    line = user_error(argv, capsys)
    assert line.startswith("fastser train: error: --resume: the run in ")
    assert (run / "last.pt").read_bytes() == before  # nothing was trained
    return line


def test_another_seed_is_another_split(run, corpus_source, capsys):
    line = _refused(train_argv(corpus_source, run, "--resume", "--seed", "1"), run, capsys)
    assert "seed (stored 0, now 1)" in line
    stored = load_checkpoint(run / "last.pt")["run"]["speakers"]
    if "speakers (stored" in line:  # the split moved with the seed
        assert repr(stored["test"]) in line


def test_another_corpus_is_refused(run, corpus_source, tmp_path, capsys):
    folder = corpus_source.split(":", 1)[1]
    other = tmp_path / "other-corpus"
    other.mkdir()
    os.symlink(os.path.join(folder, "wav"), other / "wav")  # same audio, two utterances fewer
    manifest = json.loads(open(os.path.join(folder, "manifest.json")).read())
    manifest["utterances"] = manifest["utterances"][2:]
    (other / "manifest.json").write_text(json.dumps(manifest))
    line = _refused(train_argv(f"synthetic:{other}", run, "--resume"), run, capsys)
    assert f"data (stored '{corpus_source}', now 'synthetic:{other}')" in line
    assert "utterances (stored" in line


def test_another_fold_moves_speakers_between_parts(corpus_source, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_command(train_argv(corpus_source, out, "--protocol", "speaker"), capsys)[0] == 0
    line = _refused(train_argv(corpus_source, out, "--protocol", "speaker", "--fold", "2",
                               "--resume"), out, capsys)
    assert "fold (stored 1, now 2)" in line and "test_speakers (stored" in line
    assert "speakers (stored {train: " in line


def test_a_changed_setting_is_named_not_a_load_state_dict_traceback(run, corpus_source, capsys):
    line = _refused(train_argv(corpus_source, run, "--resume", "--set", "hidden=8"), run, capsys)
    assert "setting hidden (stored 16, now 8)" in line and "state_dict" not in line


def test_more_epochs_need_force_and_then_continue(run, corpus_source, capsys):
    line = _refused(train_argv(corpus_source, run, "--resume", "--epochs", "2"), run, capsys)
    assert "option epochs (stored 1, now 2)" in line and "pass --force" in line
    status, _ = run_command(train_argv(corpus_source, run, "--resume", "--epochs", "2",
                                       "--force"), capsys)
    assert status == 0
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert [json.loads(l)["epoch"] for l in open(run / "metrics.jsonl")] == [1, 2]


def test_force_never_lets_an_unsafe_difference_through(run, corpus_source, capsys):
    line = _refused(train_argv(corpus_source, run, "--resume", "--epochs", "2", "--lr", "0.5",
                               "--force"), run, capsys)
    assert "option lr (stored 0.001, now 0.5)" in line and "--force accepts only" in line


def test_the_same_command_resumes(run, corpus_source, capsys):
    assert run_command(train_argv(corpus_source, run, "--resume"), capsys)[0] == 0


def test_a_checkpoint_of_an_earlier_release_is_compared_on_what_it_stored(run, corpus_source,
                                                                          capsys):
    payload = load_checkpoint(run / "last.pt")
    for key in ("speakers", "utterances"):  # not stored before 0.2
        del payload["run"][key]
    del payload["format"], payload["version"]
    save_checkpoint(payload, run / "last.pt")
    assert run_command(train_argv(corpus_source, run, "--resume"), capsys)[0] == 0


def test_the_trainer_itself_compares(tmp_path):
    config = TrainConfig(epochs=1, batch_size=8, progress=False, device="cpu")
    items = make_items(32)
    Trainer(ToyRecipe(LABELS), config, tmp_path, run_info={"data": "a"}).fit(items)
    with pytest.raises(ResumeMismatchError, match=r"data \(stored 'a', now 'b'\)"):
        Trainer(ToyRecipe(LABELS), config, tmp_path, run_info={"data": "b"}).fit(
            items, resume=True)
    with pytest.raises(ResumeMismatchError, match=r"labels \(stored"):
        Trainer(ToyRecipe(LABELS[::-1]), config, tmp_path, run_info={"data": "a"}).fit(
            items, resume=True)


def test_safe_options_and_settings_are_declared():
    stored = {"recipe": "toy", "recipe_state": {"label_names": LABELS,
                                                "settings": ToyRecipe(LABELS).settings.to_dict()},
              "train_config": {"epochs": 1, "device": "cpu", "lr": 0.1, "progress": True},
              "run": {}}
    now = ToyRecipe(LABELS, implementation="reference")
    found = differences(stored, now, {"epochs": 3, "device": "auto", "lr": 0.1,
                                      "progress": False}, {})
    assert {d.name: d.safe for d in found} == {"setting implementation": True,
                                               "option epochs": True, "option device": True}
    assert "epochs" in SAFE_OPTIONS and "seed" not in SAFE_OPTIONS and "lr" not in SAFE_OPTIONS
