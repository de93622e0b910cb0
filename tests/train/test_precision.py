"""Mixed precision: the CPU bf16 detection and its override, what ``amp`` resolves to, and
every method training and predicting under CPU bf16 autocast (loss in float32, finite, the
autocast really on; predictions close to float32's)."""

from __future__ import annotations

import math

import pytest
import torch

from fastser.errors import SettingsError
from fastser.methods import METHODS, recipe_class
from fastser.train import precision
from fastser.train.evaluation import predict_items
from fastser.train.trainer import TrainConfig, Trainer
from random_models import demo_recipe

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

CPU = torch.device("cpu")


def test_bf16_flags_are_read_from_cpuinfo():
    cpuinfo = ("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n"
               "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert precision.bf16_flags_in(cpuinfo) == ("avx512_bf16",)
    assert precision.bf16_flags_in("flags : fpu amx_bf16 avx512_bf16\n") == (
        "amx_bf16", "avx512_bf16")
    assert precision.bf16_flags_in("flags : fpu avx2 avx512f\n") == ()


@pytest.mark.parametrize("override, expected", [("1", "bf16"), ("0", "off")])
def test_auto_follows_the_override_on_cpu(monkeypatch, override, expected):
    monkeypatch.setenv(precision.CPU_BF16_ENV, override)
    assert precision.resolve_amp("auto", CPU) == expected
    assert precision.resolve_amp("off", CPU) == "off"  # explicit modes are kept
    assert precision.resolve_amp("bf16", CPU) == "bf16"


def test_auto_without_override_follows_the_cpu_flags(monkeypatch):
    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)
    expected = "bf16" if precision.cpu_bf16_flags() else "off"
    assert precision.resolve_amp("auto", CPU) == expected
    assert precision.resolve_amp("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(SettingsError, match="amp must be one of"):
        precision.resolve_amp("fp8", CPU)


def test_auto_keeps_float32_on_the_cpu_for_the_methods_that_opt_out(monkeypatch):
    from types import SimpleNamespace

    from fastser.inference import Recognizer
    from random_models import random_trained

    monkeypatch.setenv(precision.CPU_BF16_ENV, "1")
    assert sorted(m for m in METHODS if not recipe_class(m).cpu_bf16) == ["can", "glrf", "mmtl",
                                                                         "transformer"]
    assert precision.resolve_amp("auto", CPU, cpu_bf16=False) == "off"
    assert precision.resolve_amp("bf16", CPU, cpu_bf16=False) == "bf16"  # explicit: kept
    assert precision.resolve_amp("auto", torch.device("cuda"), cpu_bf16=False) == "bf16"
    for name, expected in (("glrf", "off"), ("mstr", "bf16")):
        recipe, model = random_trained(name)
        assert Recognizer(SimpleNamespace(recipe=recipe, model=model), amp="auto").amp == expected
    with precision.autocast("auto", CPU, cpu_bf16=False):
        assert not torch.is_autocast_enabled("cpu")


def test_autocast_context(monkeypatch):
    monkeypatch.setenv(precision.CPU_BF16_ENV, "1")
    with precision.autocast("auto", CPU):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16
    with precision.autocast("off", CPU):
        assert not torch.is_autocast_enabled("cpu")


class AutocastSpy:
    """Wraps a recipe's loss and step_gradients: records the autocast state and loss dtype."""

    def __init__(self, recipe):
        self.states: list[tuple[bool, torch.dtype, torch.dtype]] = []
        loss, step_gradients = recipe.loss, recipe.step_gradients

        def record(value):
            self.states.append((torch.is_autocast_enabled("cpu"),
                                torch.get_autocast_dtype("cpu"), value.dtype))
            return value

        def spied_loss(model, batch):
            return record(loss(model, batch))

        def spied_step_gradients(model, batch):
            own = step_gradients(model, batch)
            if own is not None:
                record(own.loss)
            return own

        recipe.loss, recipe.step_gradients = spied_loss, spied_step_gradients


@pytest.mark.parametrize("name", [m for m in sorted(METHODS)  # egemaps: fitted by sklearn
                                  if recipe_class(m).gradient_trained])
def test_method_trains_and_predicts_under_cpu_bf16(name, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv(precision.CPU_BF16_ENV, "1")
    utterances = list(tiny_corpus)
    recipe = demo_recipe(name, tiny_corpus, tmp_path)
    items = recipe.featurize(utterances)
    spy = AutocastSpy(recipe)
    config = TrainConfig(epochs=1, batch_size=8, progress=False, device="cpu", amp="bf16")
    result = Trainer(recipe, config, tmp_path / "run").fit(items[:32], items[32:])
    assert spy.states and all(on and dtype == torch.bfloat16 and loss == torch.float32
                              for on, dtype, loss in spy.states), spy.states
    assert math.isfinite(result.history[0]["train_loss"])
    model = result.model
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not .bfloat16()
    full = predict_items(recipe, model, items[32:])[0]
    with precision.autocast("bf16", CPU):
        half = predict_items(recipe, model, items[32:])[0]
    assert half.probs.dtype == torch.float32
    torch.testing.assert_close(half.probs, full.probs, atol=0.05, rtol=0)


@pytest.mark.parametrize("name", ["glrf", "mstr"])
def test_recognizer_under_bf16_matches_float32(name, tiny_corpus, tmp_path):
    from types import SimpleNamespace

    from fastser.audio.io import SAMPLE_RATE, load_audio
    from fastser.inference import Recognizer

    recipe = demo_recipe(name, tiny_corpus, tmp_path)
    recipe.fit_extra(recipe.featurize(list(tiny_corpus)[:8]))
    torch.manual_seed(0)
    trained = SimpleNamespace(recipe=recipe, model=recipe.build_model())
    waveform = load_audio(list(tiny_corpus)[0].path, SAMPLE_RATE)
    full = Recognizer(trained).predict(waveform, SAMPLE_RATE)
    half = Recognizer(trained, amp="bf16").predict(waveform, SAMPLE_RATE)
    assert half.scores.keys() == full.scores.keys()
    for label, score in full.scores.items():
        assert half.scores[label] == pytest.approx(score, abs=0.05)
    assert len(half.segments) == len(full.segments)
    with pytest.raises(SettingsError, match="amp must be one of"):
        Recognizer(trained, amp="half")
