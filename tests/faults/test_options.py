"""Options and settings, as a careless user gives them: every --set key of every method and every
training option is checked before any work, in one line naming the key and what it accepts."""

import dataclasses
import typing

import pytest
import torch

from fastser.cli import main
from fastser.errors import SettingsError
from fastser.methods import method_names, recipe_class
from fastser.train.kit.settings import Settings
from fastser.train.trainer import TrainConfig
from faults.helpers import train_argv, user_error


def _bad_values(kind) -> list[str]:
    """--set texts a setting of type ``kind`` must refuse."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        options = [a for a in args if a is not type(None)]
        if str in options or dict in options or any(typing.get_origin(a) is dict
                                                      for a in options):
            return []  # free text (a path, a JSON object) has no wrong type
        return [bad for a in options for bad in _bad_values(a)
                if all(bad in _bad_values(o) for o in options)]
    if kind is bool:
        return ["2", "abc", "null"]
    if kind in (int, float):
        return ["abc", "true", "nan", "inf", "[1]"]
    if origin is tuple:
        return ["abc", "true", "{}"]
    return []


def _cases():
    for method in method_names():
        cls = recipe_class(method)
        for name, f in cls.Settings.fields().items():
            kind = cls.Settings.types()[name]
            bad = list(_bad_values(kind))
            if f.metadata["choices"] is not None:
                bad.append("not-a-choice")
            for text in bad:
                yield pytest.param(method, name, text, id=f"{method}-{name}={text}")


@pytest.mark.parametrize("method, key, text", list(_cases()))
def test_every_setting_of_every_method_refuses_a_wrong_value(method, key, text):
    cls = recipe_class(method)
    with pytest.raises(SettingsError, match=rf"^{method}: setting {key}: expected "):
        cls.Settings.parse(method, key, text)


def test_every_method_has_settings_with_wrong_values_checked():
    """The enumeration above covers every method and most settings (guards the generator)."""
    covered = {(c.values[0], c.values[1]) for c in _cases()}
    for method in method_names():
        fields = recipe_class(method).Settings.fields()
        assert sum((method, name) in covered for name in fields) >= len(fields) // 2, method


@pytest.mark.parametrize("argv, message", [
    (["--set", "k=abc"], "glrf: setting k: expected number in (0, 1], got 'abc'"),
    (["--set", "k=true"], "glrf: setting k: expected number in (0, 1], got True"),
    (["--set", "k=nan"], "glrf: setting k: expected number in (0, 1]"),
])
def test_glrf_settings_on_the_command_line(argv, message, tmp_path, capsys):
    line = user_error(["train", "--model", "glrf", "--out", str(tmp_path / "run"), *argv],
                      capsys)
    assert message in line
    assert not (tmp_path / "run").exists()  # refused before any work


def test_mstr_p_must_be_an_integer(tmp_path, capsys):
    line = user_error(["train", "--model", "mstr", "--out", str(tmp_path / "run"), "--set",
                       "p=2.5"], capsys)
    assert "mstr: setting p: expected integer in [2, inf), got 2.5" in line


@pytest.mark.parametrize("option, value, accepted", [
    ("--grad-clip", "-1", "expected a finite number > 0, or off"),
    ("--grad-clip", "0", "expected a finite number > 0, or off"),
    ("--grad-clip", "nan", "expected a finite number > 0, or off"),
    ("--grad-clip", "inf", "expected a finite number > 0, or off"),
    ("--lr", "0", "expected a finite number > 0"),
    ("--lr", "-0.1", "expected a finite number > 0"),
    ("--lr", "inf", "expected a finite number > 0"),
    ("--lr", "nan", "expected a finite number > 0"),
    ("--lr", "1e39", "expected a finite number > 0 (at most 3.4e+38, for float32 weights)"),
    ("--weight-decay", "-1", "expected a finite number >= 0"),
    ("--weight-decay", "nan", "expected a finite number >= 0"),
    ("--warmup-fraction", "1", "expected a number in [0, 1)"),
    ("--warmup-fraction", "nan", "expected a number in [0, 1)"),
    ("--epochs", "0", "expected an integer >= 1"),
    ("--batch-size", "0", "expected an integer >= 1"),
    ("--patience", "0", "expected an integer >= 1"),
    ("--seed", "-1", "expected an integer >= 0"),
    ("--device", "foo", "expected auto, cpu, cuda or cuda:N, got 'foo'"),
    ("--device", "cuda:x", "expected auto, cpu, cuda or cuda:N"),
    ("--device", "meta", "expected auto, cpu, cuda or cuda:N, got 'meta' (fastser runs on CPUs"),
])
def test_training_options_are_checked_before_any_work(option, value, accepted, corpus_source,
                                                      tmp_path, capsys):
    out = tmp_path / "run"
    line = user_error(train_argv(corpus_source, out, f"{option}={value}"), capsys)
    name = option[2:].replace("-", "_")
    assert f"{name} ({option}): {accepted}" in line, line
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_cuda_without_a_gpu_says_so(command, corpus_source, trained_run, tmp_path, capsys):
    argv = {"train": train_argv(corpus_source, tmp_path / "run", "--device", "cuda"),
            "eval": ["eval", "--checkpoint", str(trained_run / "best.pt"), "--device", "cuda"],
            "predict": ["predict", "--checkpoint", str(trained_run / "best.pt"),
                        __file__, "--device", "cuda"]}[command]
    line = user_error(argv, capsys)
    assert "no CUDA device" in line and "corrupt" not in line and "map_location" not in line


def test_a_gpu_index_beyond_the_machine_is_named(tmp_path, capsys):
    count = torch.cuda.device_count()
    with pytest.raises(SettingsError, match="no CUDA device" if not count else
                       f"there is no CUDA device {count + 3}"):
        TrainConfig(device=f"cuda:{count + 3}")


def test_grad_clip_off_switches_clipping_off(corpus_source, tmp_path, capsys):
    from fastser.cli import build_parser
    from fastser.cli.training import _train_config

    config, _ = _train_config(build_parser().parse_args(
        train_argv(corpus_source, tmp_path, "--grad-clip", "off")))
    assert config.grad_clip is None
    with pytest.raises(SystemExit) as exit_:  # argparse's own error: usage and one line
        main(train_argv(corpus_source, tmp_path / "run", "--grad-clip", "abc"))
    assert exit_.value.code == 2
    assert "--grad-clip: expected a number > 0 or off, got 'abc'" in capsys.readouterr().err


def test_train_config_in_python():
    assert TrainConfig(grad_clip="off", device="cpu").grad_clip is None
    assert TrainConfig(epochs=3.0, device="cpu").epochs == 3  # an integral float is an integer
    for bad in ({"epochs": 2.5}, {"epochs": True}, {"batch_size": "8"}, {"lr": "0.1"},
                {"grad_clip": -1.0}, {"grad_clip": float("nan")}, {"monitor": "val_loss"},
                {"amp": "fp8"}, {"progress": "yes"}, {"patience": 0}, {"device": ""}):
        with pytest.raises(SettingsError, match=rf"training option {next(iter(bad))}[ :]"):
            TrainConfig(**{"device": "cpu", **bad})


def test_settings_base_declares_no_untyped_field():
    """Every Settings field, of every method, has a type the checks know (no silent pass)."""
    for method in method_names():
        settings = recipe_class(method).Settings
        assert issubclass(settings, Settings)
        for f in dataclasses.fields(settings):
            assert settings.types()[f.name] is not typing.Any, (method, f.name)
