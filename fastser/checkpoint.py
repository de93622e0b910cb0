"""The checkpoint file: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values (no pickled objects): ``format``,
``version``, ``recipe`` (method name), ``recipe_state`` (label names, settings and what the
recipe learnt from the training set), ``model`` (state dict) and, for training checkpoints,
``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``step``, ``rng``, ``history``, ``best``,
``train_config`` and ``run`` (data source and split). Writing is the training layer's job,
reading the inference layer's; both use this module.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import torch

from fastser.devices import resolve_device
from fastser.errors import CheckpointError
from fastser.outputs import atomic_file

FORMAT = "fastser-checkpoint"
VERSION = 1
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` atomically (:func:`fastser.outputs.atomic_file`): a crash
    or a full disk leaves the old file or the new one, never a half-written one; a full disk is
    a StorageError naming the file."""
    with atomic_file(path) as file:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, file)


def load_checkpoint(path: str | os.PathLike, *, recipe: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a fastser checkpoint with ``weights_only=True`` (a checkpoint is data: pickled
    objects are never run) onto the device ``map_location`` (checked first: "no CUDA device"
    when that is the cause); ``recipe`` (when given) must match the method that wrote it."""
    device = resolve_device(map_location)
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a damaged file fails in many ways (zip, pickle, memo keys)
        raise CheckpointError(f"checkpoint {path} {_unreadable(error)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fastser checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload.get('version')}, "
                              f"this fastser reads version {VERSION}")
    if recipe is not None and payload.get("recipe") != recipe:
        raise CheckpointError(f"checkpoint {path} holds a {payload.get('recipe')!r} model, "
                              f"not {recipe!r}")
    return payload


def _check_file(path: Path) -> None:
    """CheckpointError unless ``path`` is a non-empty regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {error.strerror}") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file (e.g. "
                              f"{path / 'best.pt'})")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"checkpoint {path} is not a regular file (it is a "
                              f"{_file_kind(mode)}); fastser reads checkpoints from files")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _unreadable(error: Exception) -> str:
    """Why torch could not load a file, in fastser's words: torch's own messages advise
    retrying with ``weights_only=False`` (which would run whatever the file holds) or
    ``map_location``, advice that must not reach a user holding a damaged or hostile file."""
    if isinstance(error, pickle.UnpicklingError):
        found = _GLOBAL.search(str(error))
        if found:
            return (f"holds pickled Python objects ({found.group(1)}); a fastser checkpoint "
                    "holds only tensors and plain values, and fastser never runs code from a "
                    "checkpoint")
        return "is corrupt or not a torch file"
    if isinstance(error, OSError):
        return f"cannot be read: {error.strerror or error}"
    first = str(error).split(". ")[0].split("\n")[0].strip()
    if isinstance(error, RuntimeError) and first and not re.search(
            r"weights_only|map_location|torch\.load", first):
        return f"is corrupt or truncated ({first})"
    return "is corrupt, truncated, or not a torch file"
