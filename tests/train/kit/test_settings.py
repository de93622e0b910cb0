"""Typed method settings: defaults declared once, every value type- and range-checked with an
error naming the method and the key, command-line text parsed by the setting's type, renamed
settings of earlier releases upgraded, descriptions generated from the declarations."""

from dataclasses import dataclass

import pytest

from fastser.errors import SettingsError
from fastser.train.kit import Settings, setting


@dataclass(frozen=True, kw_only=True)
class Example(Settings):
    k: float = setting(0.7, "a fraction", low=0.0, high=1.0, low_open=True)
    p: int = setting(3, "an integer >= 2", low=2)
    label: str | None = setting("neutral", "a label or null")
    mode: str = setting("aligned", "a choice", choices=("aligned", "equal"))
    conv: tuple[tuple[int, int, int], ...] = setting(((5, 5, 16),), "layers", low=1)
    pool: tuple[int, int] = setting((1, 1), "two factors", low=1)
    config: str | dict = setting("small", "a preset name or a JSON object")
    flag: bool = setting(False, "a switch")

    def check(self, method):
        if self.p > 10 and self.k > 0.5:
            raise SettingsError(f"{method}: p > 10 needs k <= 0.5")


def test_defaults_and_overrides():
    settings = Example.build("m", {"k": 0.5, "conv": [[3, 3, 8], [1, 1, 4]]})
    assert settings.k == 0.5 and settings.p == 3 and settings.conv == ((3, 3, 8), (1, 1, 4))
    assert settings.implementation == "fused" and settings.speaker_norm is False
    assert settings.changed() == {"k": 0.5, "conv": ((3, 3, 8), (1, 1, 4))}
    assert Example.build("m", settings.to_dict()) == settings
    assert settings.replace("m", p=4).p == 4


@pytest.mark.parametrize("key, value, expected", [
    ("k", 0.0, r"m: setting k: expected number in \(0, 1\], got 0.0"),
    ("k", True, "setting k: expected number"),
    ("k", "0.5", "setting k: expected number"),
    ("k", float("nan"), "setting k: expected number"),
    ("p", 2.5, r"setting p: expected integer in \[2, inf\), got 2.5"),
    ("p", 1, r"setting p: expected integer in \[2, inf\)"),
    ("mode", "other", 'setting mode: expected string \\(one of "aligned", "equal"\\)'),
    ("conv", [[0, 3, 8]], "setting conv: expected list of \\[integer, integer, integer\\]"),
    ("pool", [1, 1, 1], "setting pool: expected \\[integer, integer\\]"),
    ("flag", 1, "setting flag: expected true/false"),
    ("label", 3, "setting label: expected string or null"),
    ("implementation", "naive", "setting implementation: expected string"),
])
def test_bad_values_are_rejected_naming_the_key(key, value, expected):
    with pytest.raises(SettingsError, match=expected):
        Example.build("m", {key: value})


def test_unknown_keys_and_cross_field_checks():
    with pytest.raises(SettingsError, match="m: unknown setting\\(s\\) hop; known: .*conv"):
        Example.build("m", {"hop": 1})
    with pytest.raises(SettingsError, match="p > 10 needs k <= 0.5"):
        Example.build("m", {"p": 11})


@pytest.mark.parametrize("key, text, value", [
    ("k", "0.25", 0.25), ("p", "4", 4), ("p", "4.0", 4), ("label", "null", None),
    ("label", "calm", "calm"), ("label", "1", "1"), ("mode", "equal", "equal"),
    ("conv", "[[3,3,8]]", ((3, 3, 8),)), ("config", "tiny", "tiny"),
    ("config", '{"hidden_size": 32}', {"hidden_size": 32}), ("flag", "true", True),
])
def test_command_line_text_is_parsed_by_the_setting_type(key, text, value):
    assert Example.parse("m", key, text) == value


@pytest.mark.parametrize("key, text, expected", [
    ("k", "abc", "setting k: expected number in \\(0, 1\\], got 'abc'"),
    ("k", "true", "setting k: expected number"),
    ("p", "2.5", "setting p: expected integer"),
    ("flag", "1", "setting flag: expected true/false"),
    ("nope", "1", "m: unknown setting nope"),
])
def test_bad_command_line_values_are_rejected(key, text, expected):
    with pytest.raises(SettingsError, match=expected):
        Example.parse("m", key, text)


def test_renamed_settings_of_earlier_releases_are_upgraded():
    assert Example.build("m", {"naive": True}).implementation == "reference"
    assert Example.build("m", {"naive": False}).implementation == "fused"


def test_describe_lists_every_setting_with_type_default_and_range():
    rows = {name: (kind, default, doc) for name, kind, default, doc in Example.describe()}
    assert set(rows) == set(Example.fields())
    assert rows["k"] == ("number", "0.7", "a fraction in (0, 1]")
    assert rows["conv"][1] == "[[5, 5, 16]]"
    assert rows["label"][:2] == ("string or null", '"neutral"')


def test_mutable_defaults_are_refused():
    with pytest.raises(TypeError, match="immutable"):
        setting([1, 2], "a list")
