"""The ``fastser`` command: one module per group of subcommands, each with a ``register(sub)``
that adds its parsers; the handlers are thin and call the library.

- :mod:`.training`: train, cv, eval, settings
- :mod:`.inference`: predict, export
- :mod:`.bench`: bench
- :mod:`.corpus`: synth
- :mod:`.data`: data check, data convert
- :mod:`.about`: info, demo

A user's mistake (a :class:`fastser.errors.UserError`: bad path, option, setting, audio,
corpus or checkpoint) is printed in one line with exit status 2; any other exception is a bug
in fastser and keeps its traceback (exit status 1).  The ``fastser`` executable
(:func:`console`) prints each distinct warning once, in one line, without Python's source
location.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from fastser.cli import about, bench, corpus, data, inference, training
from fastser.cli._common import CommandError
from fastser.errors import UserError

__all__ = ["CommandError", "build_parser", "console", "main"]

GROUPS = (training, inference, bench, corpus, data, about)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastser",
        description="Speech emotion recognition on fused C++/CUDA PyTorch operators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"fastser {args.command}: error: {error}", file=sys.stderr)
        return 2


def console(argv: list[str] | None = None) -> int:
    """The ``fastser`` executable: :func:`main`, with each distinct warning shown once, as one
    line ``fastser: warning: MESSAGE`` on standard error."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if str(message) not in shown:
            shown.add(str(message))
            print(f"fastser: warning: {message}", file=sys.stderr if file is None else file)

    with warnings.catch_warnings():
        warnings.showwarning = show
        return main(argv)


if __name__ == "__main__":
    sys.exit(console())
