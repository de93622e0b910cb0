"""No NaN checkpoints and no NaN results: a non-finite loss, gradient or weight stops training
with the step and the cause before anything non-finite is saved; predict refuses non-finite
scores."""

import pytest
import torch

import toy_recipe
from fastser.checkpoint import load_checkpoint
from fastser.errors import NonFiniteError, TrainingDiverged
from fastser.inference import Recognizer
from fastser.train.trainer import TrainConfig, Trainer
from faults.helpers import train_argv, user_error
from toy_recipe import LABELS, ToyRecipe, make_items


def _config(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 8, "lr": 0.02, "progress": False,
                          "device": "cpu", **kw})


class NaNGradientAfter(ToyRecipe):
    """A finite loss whose gradient is NaN from training step ``after`` on (0 * sqrt'(0))."""

    after = 4

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.steps = 0

    def loss(self, model, batch):
        loss = super().loss(model, batch)
        self.steps += model.training
        if self.steps > self.after:
            loss = loss + 0.0 * (model(batch["x"]).sum() * 0.0).sqrt()
        return loss


def _finite(path):
    return all(bool(torch.isfinite(v).all()) for v in load_checkpoint(path)["model"].values())


def test_a_nan_gradient_stops_training_and_best_stays_finite(tmp_path):
    items = make_items(32)  # 4 steps per epoch: the 5th step (epoch 2) turns NaN
    with pytest.raises(TrainingDiverged, match=r"toy: the gradient norm became nan at epoch 2, "
                                               r"step 5 \(lower the learning rate"):
        Trainer(NaNGradientAfter(LABELS), _config(), tmp_path).fit(items, items)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0
    assert load_checkpoint(tmp_path / "best.pt")["best"]["epoch"] == 0
    assert _finite(tmp_path / "last.pt") and _finite(tmp_path / "best.pt")


def test_weights_that_turn_infinite_stop_training_before_any_checkpoint(tmp_path,
                                                                         monkeypatch):
    step = torch.optim.AdamW.step

    def overflowing(self, *args, **kw):  # an update that overflows a weight
        result = step(self, *args, **kw)
        self.param_groups[0]["params"][0].data.view(-1)[0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", overflowing)
    with pytest.raises(TrainingDiverged, match="the weights became non-finite after the "
                                               "optimiser step at epoch 1, step 1"):
        Trainer(ToyRecipe(LABELS), _config(), tmp_path).fit(make_items(32), make_items(16))
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "last.pt").exists()


def test_a_diverged_training_is_one_line_in_the_command(corpus_source, tmp_path, capsys):
    line = user_error(train_argv(corpus_source, tmp_path / "run", "--lr", "1e30",
                                 "--grad-clip", "off"), capsys)
    assert line.startswith("fastser train: error: toy: the ") and " at epoch 1, step " in line
    assert "(lower the learning rate" in line
    assert not (tmp_path / "run" / "best.pt").exists()


def test_predict_refuses_non_finite_scores(trained_run, corpus_source, monkeypatch, capsys):
    wav = next((__import__("pathlib").Path(corpus_source.split(":", 1)[1]) / "wav").iterdir())

    def nan_scores(self, model, batch):
        return toy_recipe.Predictions(torch.full((len(batch["x"]), 3), float("nan")))

    monkeypatch.setattr(ToyRecipe, "predict", nan_scores)
    with pytest.raises(NonFiniteError, match="non-finite scores"):
        Recognizer.from_checkpoint(trained_run / "best.pt").predict(wav)
    line = user_error(["predict", "--checkpoint", str(trained_run / "best.pt"), str(wav)],
                      capsys)
    assert f"non-finite scores (NaN or infinity) for {wav}" in line
