"""What the command modules share: the error type of bad options, method names for
``choices``, the options of commands that load a trained checkpoint, metric printing."""

from __future__ import annotations

import argparse
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


def key_value_pairs(pairs: list[str] | None, option: str = "--set") -> list[tuple[str, str]]:
    """``option``'s KEY=VALUE arguments as (KEY, VALUE) text pairs, in order."""
    parsed = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"{option} expects KEY=VALUE, got {pair!r}")
        parsed.append((key, value))
    return parsed


def key_values(pairs: list[str] | None) -> dict[str, str]:
    """--set KEY=VALUE pairs (the values as text; a repeated key: the last)."""
    return dict(key_value_pairs(pairs))


def add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    """The options of commands that load a trained checkpoint: the paths it may use."""
    p.add_argument("--set", action="append", metavar="KEY=PATH",
                   help="a path setting the model needs on this machine (repeatable), e.g. "
                        "--set ssl_path=DIR for SAP with pretrained weights; a checkpoint's "
                        "stored paths are not used")
    p.add_argument("--stored-paths", dest="stored_paths", action="store_true",
                   help="use the paths stored in the checkpoint (only for checkpoints you "
                        "trust)")


def checkpoint_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of load_trained / Recognizer.from_checkpoint from those options."""
    return {"settings": key_values(args.set), "stored_paths": args.stored_paths}
