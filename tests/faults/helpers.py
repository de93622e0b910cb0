"""Helpers of the fault and bad-input tests: the toy training command, copies of a run, and
the command's exit status and stderr lines."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastser.cli import main


def train_argv(source: str, out: Path, *extra: str) -> list[str]:
    """``fastser train`` of the toy method on ``source`` into ``out`` (1 epoch unless
    ``extra`` says otherwise)."""
    return ["train", "--model", "toy", "--data", source, "--out", str(out), "--epochs", "1",
            "--batch-size", "8", "--no-progress", *extra]


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def run_command(argv: list[str], capsys) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of ``fastser ARGV``."""
    capsys.readouterr()
    status = main(argv)
    return status, capsys.readouterr().err.splitlines()


def user_error(argv: list[str], capsys) -> str:
    """The one-line message of a command that must fail with a user error (exit status 2)."""
    status, lines = run_command(argv, capsys)
    assert status == 2, lines
    assert len(lines) == 1, lines
    return lines[0]
