"""Typed method settings: every setting of a method declared once, with its type, range, default
and a one-line description; checked before any work is done.

A method's settings are a frozen dataclass deriving from :class:`Settings`, each field declared
with :func:`setting`::

    @dataclass(frozen=True, kw_only=True)
    class GLRFSettings(Settings):
        k: float = setting(0.7, "fraction of segments in the head", low=0.0, high=1.0,
                           low_open=True)

:meth:`Settings.build` turns a mapping of overrides (Python keyword arguments, ``--set KEY=VALUE``
strings already parsed by :meth:`Settings.parse`, or a checkpoint's stored values) into an
instance; unknown keys, wrong types and out-of-range values raise a :class:`SettingsError` that
names the method, the key and what is accepted. The defaults are the dataclass defaults: the
documentation points to ``fastser settings MODEL`` (:meth:`Settings.describe`) instead of
restating them.

A :class:`Preset` is a named bundle of settings and training options (``--preset demo``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Union

from fastser.errors import SettingsError

IMPLEMENTATIONS = ("fused", "reference")


def setting(default: Any, doc: str, *, choices: tuple[Any, ...] | None = None,
            low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False, path: bool = False, resume_safe: bool = False) -> Any:
    """A settings field: its default, a one-line description, and optionally the accepted
    ``choices`` or the range [``low``, ``high``] (``low_open``/``high_open``: exclusive ends).
    Ranges apply to numbers and to every number inside a tuple.

    ``path``: the value is a file or folder of the machine that trained (weights to load, a
    cache to write); a checkpoint's stored value is never used, only one the user passes
    again (:meth:`fastser.train.recipe.Recipe.from_state`). ``resume_safe``: another value
    trains the same model (an implementation of the same computation, a cache location), so a
    resumed run may change it with ``--force``."""
    meta = {"doc": doc, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "path": path, "resume_safe": resume_safe}
    if isinstance(default, (list, dict)):
        raise TypeError("setting defaults must be immutable (use tuples)")
    return field(default=default, metadata=meta)


def redefault(base: type["Settings"], name: str, default: Any) -> Any:
    """Setting ``name`` of ``base`` with another default (the same description and accepted
    values), for a method whose default differs from the shared one."""
    meta = base.fields()[name].metadata
    return setting(default, meta["doc"], choices=meta["choices"], low=meta["low"],
                   high=meta["high"], low_open=meta["low_open"], high_open=meta["high_open"])


@dataclass(frozen=True)
class Preset:
    """A named starting point: settings and training options (TrainConfig fields)."""

    doc: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Settings every method has; subclasses add their own fields with :func:`setting`."""

    implementation: str = setting(
        "fused", "fused: fastser's fused ops (or batched code); reference: the straightforward "
        "PyTorch version of the same computation (for checks and speed comparisons)",
        choices=IMPLEMENTATIONS, resume_safe=True)
    speaker_norm: bool = setting(
        False, "standardise each speaker's features with that speaker's own statistics (no "
        "labels needed, so held-out speakers too; a lone recording is its own speaker, or, for "
        "one feature vector per utterance, takes the training set's typical speaker)")

    #: The 0.1 values of settings whose default has changed since: checkpoints of fastser 0.1
    #: stored only the settings the user changed, the rest were that release's defaults.
    defaults_0_1: ClassVar[dict[str, Any]] = {}
    #: Settings renamed since an earlier release: old name -> function(old value) -> (new name,
    #: new value). Applied to stored checkpoints and to user input alike.
    renamed: ClassVar[dict[str, Any]] = {
        "naive": lambda value: ("implementation", "reference" if value else "fused"),
    }

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def build(cls, method: str, values: Mapping[str, Any] | None = None) -> "Settings":
        """The settings with ``values`` (key -> value) replacing the defaults, every value
        checked. SettingsError for an unknown key, a wrong type or a value out of range."""
        values = cls.upgrade(dict(values or {}))
        known = cls.fields()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SettingsError(f"{method}: unknown setting(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(known))}")
        checked = {key: _check(method, known[key], cls.types()[key], value)
                   for key, value in values.items()}
        settings = cls(**checked)
        settings.check(method)
        return settings

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with settings renamed since earlier releases under their new names."""
        for old, convert in cls.renamed.items():
            if old in values:
                new, value = convert(values.pop(old))
                values.setdefault(new, value)
        return values

    def check(self, method: str) -> None:
        """Checks that involve several settings (override; raise SettingsError)."""

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def types(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    @classmethod
    def path_settings(cls) -> tuple[str, ...]:
        """The settings declared with ``path=True`` (never taken from a checkpoint)."""
        return tuple(name for name, f in cls.fields().items() if f.metadata["path"])

    @classmethod
    def resume_safe_settings(cls) -> tuple[str, ...]:
        """The settings declared with ``resume_safe=True``."""
        return tuple(name for name, f in cls.fields().items() if f.metadata["resume_safe"])

    # -- command-line values -------------------------------------------------------------------
    @classmethod
    def parse(cls, method: str, key: str, text: str) -> Any:
        """The value of ``--set KEY=TEXT``: JSON where TEXT is JSON (numbers, true/false, null,
        lists, objects) of a type the setting takes, else the text itself; checked against the
        setting's type and range."""
        known = cls.fields()
        if key not in known:
            raise SettingsError(f"{method}: unknown setting {key}; known: "
                                f"{', '.join(sorted(known))}")
        kind = cls.types()[key]
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if value is not None and _accepts(kind, str) and not _accepts(kind, type(value)):
            value = text  # e.g. a label named "1" for a string setting
        return _check(method, known[key], kind, value)

    # -- views ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every setting, as plain values (tuples stay tuples)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def changed(self) -> dict[str, Any]:
        """The settings that differ from their defaults."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    def replace(self, method: str, **values: Any) -> "Settings":
        """These settings with ``values`` changed (checked like :meth:`build`)."""
        return type(self).build(method, {**self.changed(), **values})

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(name, type, default, description with the accepted values) of every setting."""
        rows = []
        for name, f in cls.fields().items():
            path = " [a path: never taken from a checkpoint]" if f.metadata["path"] else ""
            rows.append((name, _type_name(cls.types()[name]), _show(f.default),
                         f.metadata["doc"] + _accepted(f.metadata) + path))
        return rows


# -- type checks -------------------------------------------------------------------------------

def _check(method: str, f: dataclasses.Field, kind: Any, value: Any) -> Any:
    """``value`` converted to ``kind`` (lists to tuples, integral floats to int) and checked
    against the field's choices and range; SettingsError naming the key otherwise."""
    meta = f.metadata
    expected = (f"{method}: setting {f.name}: expected {_type_name(kind)}{_accepted(meta)}, "
                f"got {value!r}")
    try:
        converted = _convert(kind, value)
    except (TypeError, ValueError):
        raise SettingsError(expected) from None
    if meta["choices"] is not None and converted not in meta["choices"]:
        raise SettingsError(expected)
    if not all(_in_range(number, meta) for number in _numbers(converted)):
        raise SettingsError(expected)
    return converted


def _convert(kind: Any, value: Any) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value)
            except (TypeError, ValueError) as error:
                errors.append(str(error))
        raise ValueError("; ".join(errors))
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError("true or false expected")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("an integer expected")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("an integer expected")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("a number expected")
        if not math.isfinite(value):
            raise ValueError("a finite number expected")
        return float(value)
    if kind is str:
        if not isinstance(value, str) or not value:
            raise TypeError("a non-empty string expected")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError("a list expected")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{len(args)} values expected")
        return tuple(_convert(a, v) for a, v in zip(args, value))
    if origin is dict or kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError("a mapping with string keys expected")
        return dict(value)
    raise TypeError(f"unsupported setting type {kind!r}")  # pragma: no cover - declarations


def _accepts(kind: Any, python_type: type) -> bool:
    """Whether a JSON value of ``python_type`` is of a kind the setting type takes."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        return any(_accepts(a, python_type) for a in typing.get_args(kind))
    if python_type is list:
        return origin is tuple
    if python_type is dict:
        return origin is dict or kind is dict
    if python_type is int:
        return kind in (int, float)
    return kind is python_type or kind is Any


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool) or value is None or isinstance(value, (str, dict)):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, tuple):
        return [n for v in value for n in _numbers(v)]
    return []


def _in_range(number: float, meta: Mapping[str, Any]) -> bool:
    low, high = meta["low"], meta["high"]
    if low is not None and (number < low or (meta["low_open"] and number == low)):
        return False
    return high is None or not (number > high or (meta["high_open"] and number == high))


def _accepted(meta: Mapping[str, Any]) -> str:
    if meta["choices"] is not None:
        return f" (one of {', '.join(map(_show, meta['choices']))})"
    low, high = meta["low"], meta["high"]
    if low is None and high is None:
        return ""
    left = "-inf" if low is None else _show(low)
    right = "inf" if high is None else _show(high)
    return (f" in {'(' if meta['low_open'] or low is None else '['}{left}, {right}"
            f"{')' if meta['high_open'] or high is None else ']'}")


def _type_name(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"[{', '.join(_type_name(a) for a in args)}]"
    if origin is dict or kind is dict:
        return "JSON object"
    return {bool: "true/false", int: "integer", float: "number", str: "string",
            Any: "any value"}.get(kind, getattr(kind, "__name__", str(kind)))


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value)
