"""What the command modules share: the error type of bad options, method names for
``choices``, metric printing."""

from __future__ import annotations

from typing import Any

from fastser.errors import UserError


class CommandError(UserError):
    """A bad command-line option or combination of options."""


def method_names() -> list[str]:
    from fastser.methods import method_names as names

    return names()


def print_metrics(result: dict[str, Any]) -> None:
    for key in ("ua", "wa", "micro_f1", "macro_f1", "weighted_f1", "pure_accuracy"):
        if key in result:
            print(f"  {key:<14} {result[key]:.4f}")
