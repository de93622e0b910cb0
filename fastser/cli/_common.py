"""What the command modules share: the error type of bad options, method names for
``choices``, the data options (--data, --data-option, --labels, --label-map, --folds), the
options of commands that load a trained checkpoint, metric printing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fastser.errors import UserError


class CommandError(UserError):
    """A bad command-line option or combination of options."""


def method_names() -> list[str]:
    from fastser.methods import method_names as names

    return names()


SOURCES_HELP = ("synthetic, synthetic:PATH, manifest:FILE (.csv, .tsv, .jsonl, .json), "
                "iemocap:PATH, crema-d:PATH, ravdess:PATH or emodb:PATH")


def add_data_options(p: argparse.ArgumentParser, *, default: str | None = "synthetic",
                     positional: bool = False, folds: bool = False) -> None:
    """--data (or, ``positional``, SOURCE), --data-option, --labels, --label-map and
    (``folds``) --folds."""
    if positional:
        p.add_argument("data", metavar="SOURCE", help=SOURCES_HELP)
    else:
        p.add_argument("--data", default=default, help=SOURCES_HELP + (
            f" (default: {default})" if default else
            " (default: the data the run trained on, with its reader options and classes)"))
    p.add_argument("--data-option", dest="data_option", action="append", metavar="KEY=VALUE",
                   help="an option of the corpus reader (repeatable), e.g. "
                        "improvised_only=true, merge_excited=false or classes=7 for IEMOCAP")
    p.add_argument("--labels", metavar="A,B,...",
                   help="the classes to keep, in this class order (e.g. "
                        "neutral,happy,sad,angry); others are left out")
    p.add_argument("--label-map", dest="label_map", metavar="OLD=NEW,...|FILE",
                   help="merge or rename classes (excited=happy,...) or a JSON file of old -> "
                        "new names (EmoBox's label_map.json); applied before --labels")
    if folds:
        p.add_argument("--folds", metavar="PATH",
                       help="official folds instead of generated splits: an EmoBox dataset "
                            "folder (fold_1/, ...) or a CSV of id,fold")


def data_options(args: argparse.Namespace):
    """The DataOptions of the parsed --data, --data-option, --labels, --label-map and
    --folds."""
    from fastser.data.labels import parse_label_map, parse_labels
    from fastser.workflows.data import DataOptions

    return DataOptions(args.data, parse_labels(args.labels) if args.labels else None,
                       parse_label_map(args.label_map) if args.label_map else None,
                       getattr(args, "folds", None), reader_options(args.data_option))


def reader_options(pairs: list[str] | None) -> dict[str, Any]:
    """--data-option KEY=VALUE pairs: the corpus reader's options, values read as JSON where
    they are JSON (true, 7, ...), else as text."""
    options: dict[str, Any] = {}
    for key, value in key_value_pairs(pairs, "--data-option"):
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def print_metrics(result: dict[str, Any]) -> None:
    """The classification metrics, then each affect dimension's CCC, Pearson's r and MAE."""
    from fastser.train.metrics import AFFECT_METRICS

    for key in ("ua", "wa", "micro_f1", "macro_f1", "weighted_f1", "pure_accuracy", "ccc"):
        if key in result:
            print(f"  {key:<16} {result[key]:.4f}")
    for key, value in result.items():
        if key.rpartition("_")[2] in AFFECT_METRICS and key != "ccc":
            print(f"  {key:<16} {value:.4f}")


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
