"""The shared trainer: learning, metrics lines, checkpoints, early stopping, model selection
(validation loss, last epoch, averaged weights), class-balanced sampling, augmentation, methods
fitted in fit_extra, exact resumption after SIGKILL, and DDP over 2 CPU processes matching one
process."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from fastser.checkpoint import load_checkpoint
from fastser.errors import SettingsError
from fastser.train.averaging import WeightAverage
from fastser.train.evaluation import evaluate
from fastser.train.trainer import TrainConfig, Trainer
from sigkill import killed_run_code
from toy_recipe import (LABELS, FittedToyRecipe, FramesToyRecipe, OwnGradientsToyRecipe,
                        SlicedBatches, ToyRecipe, make_frame_items, make_items)
from torchrun import run_two_processes

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**kw):
    base = dict(epochs=4, batch_size=8, lr=0.02, progress=False, device="cpu", seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _metrics_lines(path):
    return [json.loads(line) for line in open(path)]


def test_fit_learns_and_writes_metrics_and_checkpoints(tmp_path):
    result = Trainer(ToyRecipe(LABELS), _config(epochs=6), tmp_path).fit(
        make_items(96), make_items(48, seed=1))
    lines = _metrics_lines(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == list(range(1, 7))
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert result.best["ua"] > 0.7  # chance is 1/3
    for name in ("last.pt", "best.pt"):
        ck = torch.load(tmp_path / name, weights_only=True)
        assert ck["recipe"] == "toy" and ck["recipe_state"]["label_names"] == LABELS
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 5


def test_early_stopping_stops_after_patience(tmp_path):
    items = make_items(32)
    # a learning rate of ~0 keeps validation UA flat: the best epoch stays the first
    result = Trainer(ToyRecipe(LABELS), _config(epochs=10, lr=1e-12, patience=2), tmp_path).fit(
        items, items)
    assert result.stopped_early
    assert len(result.history) == 3


def test_non_finite_loss_is_reported(tmp_path):
    items = make_items(16)
    items[3] = (torch.full((8,), float("nan")), 0)
    with pytest.raises(FloatingPointError, match="training loss became nan"):
        Trainer(ToyRecipe(LABELS), _config(), tmp_path).fit(items)


def test_own_gradients_give_the_same_model_as_back_propagation(tmp_path, monkeypatch):
    """A recipe's step_gradients path (here autograd of the same loss) and the trainer's own
    back-propagation take identical steps when both see the same batches."""
    items = make_items(64)
    own = Trainer(OwnGradientsToyRecipe(LABELS), _config(), tmp_path / "own").fit(items)
    # the plain recipe fed the same batches: only the gradient path differs
    monkeypatch.setattr(ToyRecipe, "train_batches",
                        lambda self, its, bs, **kw: SlicedBatches(self, its, bs))
    plain = Trainer(ToyRecipe(LABELS), _config(), tmp_path / "plain").fit(items)
    for a, b in zip(own.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)  # the last step's
    assert [r["train_loss"] for r in own.history] == pytest.approx(
        [r["train_loss"] for r in plain.history], rel=1e-6)


def test_own_batches_are_used_in_order_for_every_epoch(tmp_path, monkeypatch):
    served = []
    original = OwnGradientsToyRecipe.train_batches

    def spy(self, *args, **kw):
        batches = original(self, *args, **kw)
        served.append(batches)
        return batches

    monkeypatch.setattr(OwnGradientsToyRecipe, "train_batches", spy)
    Trainer(OwnGradientsToyRecipe(LABELS), _config(epochs=2), tmp_path).fit(make_items(32))
    # 32 items / batch 8 = 4 steps per epoch, the second half first
    assert served[0].served == [(e, s) for e in (0, 1) for s in (16, 24, 0, 8)]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError,
                       match=r"optimizer \(--optimizer\): expected one of adamw, adam, got 'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="schedule \\(--schedule\\): expected one of"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="monitor \\(--monitor\\): expected one of .*loss"):
        TrainConfig(monitor="val_loss")


def test_adam_and_adamw_differ_only_by_how_weight_decay_applies(tmp_path):
    items = make_items(32)
    models = {}
    for optimizer in ("adam", "adamw"):
        for decay in (0.0, 0.1):
            config = _config(epochs=1, optimizer=optimizer, weight_decay=decay)
            models[optimizer, decay] = Trainer(ToyRecipe(LABELS), config,
                                               tmp_path / f"{optimizer}{decay}").fit(items).model
    for a, b in zip(models["adam", 0.0].parameters(), models["adamw", 0.0].parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(models["adam", 0.1].parameters(),
                                                     models["adamw", 0.1].parameters()))
    constant = Trainer(ToyRecipe(LABELS), _config(epochs=2, schedule="constant",
                                                  warmup_fraction=0.0), tmp_path / "c").fit(items)
    assert [r["lr"] for r in constant.history] == [0.02, 0.02]


def test_monitoring_the_validation_loss_keeps_the_lowest_loss_epoch(tmp_path):
    from fastser.train.evaluation import mean_loss

    train, val = make_items(64), make_items(48, seed=1)
    result = Trainer(ToyRecipe(LABELS), _config(epochs=5, lr=0.2, monitor="loss"),
                     tmp_path).fit(train, val)
    losses = [r["val"]["loss"] for r in result.history]
    assert result.best["epoch"] == losses.index(min(losses))
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == result.best["epoch"]
    # the loss is the recipe's, of the kept weights, the mean per validation utterance (each
    # batch's mean weighted by its size: batches of 32 and 16 here), whatever the batch size
    batches = [val[i:i + 32] for i in range(0, len(val), 32)]
    recipe = ToyRecipe(LABELS)
    with torch.no_grad():
        expected = sum(float(recipe.loss(result.model.eval(), recipe.collate(b))) * len(b)
                       for b in batches) / len(val)
    assert mean_loss(recipe, result.model, val) == pytest.approx(expected)
    assert mean_loss(recipe, result.model, val, batch_size=7) == pytest.approx(expected)
    assert result.best["loss"] == pytest.approx(expected)
    # early stopping on the loss: a learning rate of ~0 keeps it flat
    flat = Trainer(ToyRecipe(LABELS), _config(epochs=10, lr=1e-12, patience=2, monitor="loss"),
                   tmp_path / "flat").fit(train, val)
    assert flat.stopped_early and len(flat.history) == 3


KILLED_RUN = """
    sys.path.insert(0, {tests!r})
    from fastser.train.trainer import TrainConfig, Trainer
    from toy_recipe import LABELS, ToyRecipe, make_items
    Trainer(ToyRecipe(LABELS), TrainConfig(**{config!r}), {out!r}).fit(
        make_items(96), make_items(48, seed=1))
"""


@pytest.mark.parametrize("options", [{}, {"optimizer": "adam", "schedule": "constant",
                                         "monitor": "loss", "grad_clip": None}])
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, options):
    config = dict(epochs=5, batch_size=8, lr=0.02, progress=False, device="cpu", seed=3,
                  **options)
    straight = Trainer(ToyRecipe(LABELS), TrainConfig(**config), tmp_path / "straight").fit(
        make_items(96), make_items(48, seed=1))
    out = tmp_path / "killed"
    code = killed_run_code(2, KILLED_RUN.format(tests=TESTS_DIR, config=config, out=str(out)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # epoch 3's write never landed
    assert len(_metrics_lines(out / "metrics.jsonl")) == 2
    resumed = Trainer(ToyRecipe(LABELS), TrainConfig(**config), out).fit(
        make_items(96), make_items(48, seed=1), resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "utterances_per_second")}
                          for r in rows]
    assert strip(_metrics_lines(out / "metrics.jsonl")) == \
        strip(_metrics_lines(tmp_path / "straight" / "metrics.jsonl"))


DDP_RUN = """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from fastser.train.trainer import TrainConfig, Trainer
    from fastser.distributed import shutdown_distributed
    from toy_recipe import LABELS, ToyRecipe, make_items
    result = Trainer(ToyRecipe(LABELS), TrainConfig(**{config!r}), {out!r}).fit(make_items(96))
    if torch.distributed.get_rank() == 0:
        torch.save(result.model.state_dict(), {out!r} + "/final.pt")
    shutdown_distributed()
"""


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    config = dict(epochs=3, batch_size=12, lr=0.02, progress=False, device="cpu", seed=7)
    single = Trainer(ToyRecipe(LABELS), TrainConfig(**config), tmp_path / "one").fit(
        make_items(96))
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_RUN).format(tests=TESTS_DIR, config=config, out=out))
    run_two_processes(str(script), timeout=300)
    ddp = torch.load(os.path.join(out, "final.pt"))
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)


def test_monitor_loss_selects_the_epoch_with_the_lowest_validation_loss(tmp_path):
    val = make_items(48, seed=1)
    recipe = ToyRecipe(LABELS)
    result = Trainer(recipe, _config(epochs=6, lr=0.2, monitor="loss"), tmp_path).fit(
        make_items(96), val)
    losses = [r["val"]["loss"] for r in result.history]
    assert result.best["epoch"] == losses.index(min(losses))
    # the recorded loss is the recipe's loss over the validation items, in float64 here
    with torch.no_grad():
        x = torch.stack([x for x, _ in val]).double()
        y = torch.tensor([y for _, y in val])
        expected = nn.functional.cross_entropy(result.model.double()(x), y)
    assert result.best["loss"] == pytest.approx(float(expected), rel=1e-5)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == result.best["epoch"]


def test_select_last_keeps_the_last_epoch(tmp_path):
    result = Trainer(ToyRecipe(LABELS), _config(epochs=4, select="last"), tmp_path).fit(
        make_items(96), make_items(48, seed=1))
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())
    assert result.best == {"epoch": 3, **result.history[-1]["val"]}


def test_select_average_averages_the_last_epochs_weights(tmp_path, monkeypatch):
    added = []
    real_add = WeightAverage.add

    def spy(self, model):
        added.append({k: v.detach().clone().double() for k, v in model.state_dict().items()})
        real_add(self, model)

    monkeypatch.setattr(WeightAverage, "add", spy)
    val = make_items(48, seed=1)
    recipe = ToyRecipe(LABELS)
    result = Trainer(recipe, _config(epochs=5, select="average", average_epochs=3),
                     tmp_path).fit(make_items(96), val)
    assert len(added) == 3  # epochs 3, 4 and 5
    best = load_checkpoint(tmp_path / "best.pt")
    for key, value in best["model"].items():
        expected = torch.stack([a[key] for a in added]).mean(0)
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-7)
    assert result.best["averaged_epochs"] == 3
    assert result.best["ua"] == evaluate(recipe, result.model, val)["ua"]


def test_a_recipe_fitted_in_fit_extra_runs_one_evaluating_epoch(tmp_path):
    recipe = FittedToyRecipe(LABELS)
    result = Trainer(recipe, _config(epochs=30), tmp_path).fit(make_items(96),
                                                                make_items(48, seed=1))
    assert len(result.history) == 1 and result.history[0]["fitted"]
    built = recipe.build_model()
    assert all(torch.equal(built.state_dict()[k], v) for k, v in result.model.state_dict().items())
    assert result.best["ua"] > 0.7
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 0


def test_class_balanced_sampling_does_not_apply_to_own_batches(tmp_path):
    with pytest.raises(SettingsError, match="class_balance"):
        Trainer(OwnGradientsToyRecipe(LABELS), _config(class_balance="sampler"), tmp_path).fit(
            make_items(32))


@pytest.mark.parametrize("options, message", [
    (dict(monitor="pure_accuracy"), "monitor"), (dict(select="first"), "select"),
    (dict(select="average", patience=3), "patience"), (dict(average_epochs=0), "average"),
    (dict(class_balance="loss"), "class_balance"), (dict(validation_speakers=-1), "validation"),
])
def test_bad_selection_options_are_rejected(options, message):
    with pytest.raises(SettingsError, match=message):
        TrainConfig(**options)


def test_masks_are_for_training_only(tmp_path):
    val = make_frame_items(30, seed=1)
    recipe = FramesToyRecipe(LABELS, time_masks=2, feature_masks=2, feature_mask_width=3)
    result = Trainer(recipe, _config(select="last"), tmp_path).fit(make_frame_items(60), val)
    assert result.best["ua"] == evaluate(recipe, result.model, val)["ua"]
    plain = Trainer(FramesToyRecipe(LABELS), _config(select="last"), tmp_path / "plain").fit(
        make_frame_items(60), val)
    assert not torch.equal(plain.model[1].weight, result.model[1].weight)


KILLED_AUGMENTED_RUN = """
    sys.path.insert(0, {tests!r})
    from fastser.train.trainer import TrainConfig, Trainer
    from toy_recipe import LABELS, FramesToyRecipe, make_frame_items
    items = make_frame_items(60)
    copies = [[(x.flip(0), y)] for x, y in items]
    Trainer(FramesToyRecipe(LABELS, time_masks=2, feature_masks=1), TrainConfig(**{config!r}),
            {out!r}).fit(items, make_frame_items(30, seed=1), train_copies=copies)
"""


def test_augmented_balanced_averaged_run_resumes_exactly(tmp_path):
    config = dict(epochs=4, batch_size=8, lr=0.02, progress=False, device="cpu", seed=3,
                  class_balance="sampler", select="average", average_epochs=3)
    items = make_frame_items(60)
    copies = [[(x.flip(0), y)] for x, y in items]
    straight = Trainer(FramesToyRecipe(LABELS, time_masks=2, feature_masks=1),
                       TrainConfig(**config), tmp_path / "straight").fit(
        items, make_frame_items(30, seed=1), train_copies=copies)
    out = tmp_path / "killed"
    code = killed_run_code(2, KILLED_AUGMENTED_RUN.format(tests=TESTS_DIR, config=config,
                                                          out=str(out)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    resumed = Trainer(FramesToyRecipe(LABELS, time_masks=2, feature_masks=1),
                      TrainConfig(**config), out).fit(items, make_frame_items(30, seed=1),
                                                      resume=True, train_copies=copies)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert resumed.best == straight.best
