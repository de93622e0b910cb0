"""Checkpoints: atomic writes, weights_only loading, clear errors, RNG restoration."""

import os
import random

import numpy as np
import pytest
import torch

from fastser.checkpoint import load_checkpoint, save_checkpoint
from fastser.errors import CheckpointError
from fastser.train.rng import rng_state, set_rng_state


def _payload():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"recipe": "toy", "model": model.state_dict(), "optimizer": opt.state_dict(),
            "epoch": 3, "history": [{"epoch": 1, "val": {"ua": 0.5}}], "rng": rng_state()}


def test_round_trip_loads_with_weights_only(tmp_path):
    path = tmp_path / "ck.pt"
    payload = _payload()
    save_checkpoint(payload, path)
    raw = torch.load(path, weights_only=True)  # must not need pickled objects
    assert raw["epoch"] == 3 and raw["format"] == "fastser-checkpoint"
    loaded = load_checkpoint(path, recipe="toy")
    for key, value in payload["model"].items():
        assert torch.equal(loaded["model"][key], value)
    assert loaded["history"] == payload["history"]


def test_rng_state_restores_every_generator():
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    state = rng_state()
    expected = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(state)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(_payload(), path)
    before = path.read_bytes()

    def exploding_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. the user pressed ^C mid-write

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_payload(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    save_checkpoint(_payload(), corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a fastser checkpoint"):
        load_checkpoint(foreign)
    other = tmp_path / "other.pt"
    save_checkpoint(_payload(), other)
    with pytest.raises(CheckpointError, match="holds a 'toy' model, not 'glrf'"):
        load_checkpoint(other, recipe="glrf")
