"""A checkpoint is data: hostile or damaged files are reported in fastser's words (never torch's
advice to load with weights_only=False), pickled code never runs, and paths stored inside a
checkpoint neither load nor write anything unless the user passes them again."""

import os
import pickle
import random

import pytest
import torch

from fastser.checkpoint import load_checkpoint
from fastser.data.synthetic import default_cache_dir
from fastser.errors import CheckpointError, SettingsError
from fastser.inference import load_trained
from fastser.methods.can import CanRecipe
from fastser.methods.sap import SAPRecipe
from faults.helpers import user_error

LABELS = ["neutral", "happy", "sad", "angry"]


class _Payload:
    """Pickles to a call that leaves a marker file: proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _commands(checkpoint, tmp_path):
    return [["predict", "--checkpoint", str(checkpoint), __file__],
            ["eval", "--checkpoint", str(checkpoint)],
            ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.ts")]]


def _hostile(tmp_path, kind):
    marker = tmp_path / "code-ran"
    path = tmp_path / f"{kind}.pt"
    if kind == "torch-zip":
        torch.save({"format": "fastser-checkpoint", "x": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    return path, marker


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_a_malicious_pickle_never_runs(kind, tmp_path, capsys):
    path, marker = _hostile(tmp_path, kind)
    for argv in _commands(path, tmp_path):
        line = user_error(argv, capsys)
        assert "weights_only" not in line and "trusted source" not in line
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    if kind == "torch-zip":
        assert "holds pickled Python objects (posix.mkdir)" in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (random.Random(0).randbytes(4096), "is corrupt"),
    (b"hello", "is corrupt"),
    (b"", "is empty (0 bytes)"),
])
def test_damaged_files_are_named_without_torchs_advice(content, message, tmp_path, capsys):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    for argv in _commands(path, tmp_path):
        line = user_error(argv, capsys)
        assert message in line
        assert "weights_only" not in line and "map_location" not in line


def test_a_truncated_checkpoint(trained_run, tmp_path, capsys):
    path = tmp_path / "best.pt"
    path.write_bytes((trained_run / "best.pt").read_bytes()[:1000])
    line = user_error(["predict", "--checkpoint", str(path), __file__], capsys)
    assert "is corrupt or truncated" in line


def test_a_folder_a_pipe_and_a_missing_file(trained_run, tmp_path, capsys):
    line = user_error(["eval", "--checkpoint", str(trained_run)], capsys)
    assert "is a folder, not a checkpoint file" in line and "does not exist" not in line
    os.mkfifo(tmp_path / "pipe.pt")
    line = user_error(["eval", "--checkpoint", str(tmp_path / "pipe.pt")], capsys)
    assert "is not a regular file (it is a named pipe)" in line and "empty" not in line
    line = user_error(["eval", "--checkpoint", str(tmp_path / "none.pt")], capsys)
    assert "does not exist" in line


def test_non_finite_weights_are_refused(trained_run, tmp_path, capsys):
    payload = load_checkpoint(trained_run / "best.pt")
    name = next(iter(payload["model"]))
    payload["model"][name].view(-1)[0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=rf"non-finite weights \(1 of \d+ values of {name}"):
        load_trained(tmp_path / "nan.pt")
    line = user_error(["predict", "--checkpoint", str(tmp_path / "nan.pt"), __file__], capsys)
    assert "non-finite weights" in line


# -- paths stored in checkpoints ---------------------------------------------------------------

def test_a_stored_model_path_is_not_loaded_unless_passed_again(tmp_path):
    stored, mine = tmp_path / "their-weights", tmp_path / "my-weights"
    state = SAPRecipe(LABELS, ssl_path=str(stored), heads=2).state()
    restored = SAPRecipe.from_state(state)
    assert restored.settings.ssl_path == str(stored)  # kept for the record
    with pytest.raises(CheckpointError, match=r"trained with ssl_path=.*pass it again \(--set "
                                              r"ssl_path=PATH"):
        restored.ssl.new_front_end()
    assert SAPRecipe.from_state(state, paths={"ssl_path": str(mine)}).required_path(
        "ssl_path") == str(mine)
    assert SAPRecipe.from_state(state, stored_paths=True).required_path(
        "ssl_path") == str(stored)


def test_a_stored_cache_folder_never_decides_where_features_are_written(tmp_path,
                                                                         tiny_corpus,
                                                                         monkeypatch):
    import fastser.train.kit.ssl as sap

    planted = tmp_path / "planted-cache"
    state = SAPRecipe(LABELS, ssl_config="tiny", heads=2, cache_dir=str(planted)).state()
    written = []

    def cached_features(front_end, paths, load, cache_dir, **kw):
        written.append(cache_dir)
        raise KeyboardInterrupt  # stop before any feature is computed

    monkeypatch.setattr(sap, "cached_features", cached_features)
    with pytest.raises(KeyboardInterrupt):
        SAPRecipe.from_state(state).raw_items([tiny_corpus[0]])
    assert written == [default_cache_dir() / "ssl-features"] and not planted.exists()


def test_a_can_model_trained_with_glove_loads_without_the_file(tmp_path):
    glove = tmp_path / "glove.txt"  # gone: the vectors are in the weights
    recipe = CanRecipe(LABELS, glove=str(glove), vocabulary=("a", "b"), embed_dim=8,
                       hidden=8, word_hidden=8)
    with pytest.raises(Exception, match="glove"):
        recipe.build_model()  # the training side does read it
    restored = CanRecipe.from_state(recipe.state())
    assert restored.path("glove") is None and restored.build_model() is not None


def test_only_path_settings_can_be_passed_to_a_trained_model(trained_run, capsys):
    with pytest.raises(SettingsError, match="hidden cannot be changed in a trained model"):
        load_trained(trained_run / "best.pt", settings={"hidden": 3})
    line = user_error(["eval", "--checkpoint", str(trained_run / "best.pt"), "--set",
                       "ssl_path=/x"], capsys)
    assert "only its path settings can be passed again (it has none)" in line
