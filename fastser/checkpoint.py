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
import tempfile
from pathlib import Path
from typing import Any

import torch

from fastser.errors import CheckpointError

FORMAT = "fastser-checkpoint"
VERSION = 1


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, flushed
    and fsynced, then renamed over ``path``. A crash leaves the old file or the new one,
    never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike, *, recipe: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a fastser checkpoint with ``weights_only=True``; ``recipe`` (when given) must match
    the method that wrote it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a damaged file fails in many ways (zip, pickle, memo keys)
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fastser checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload.get('version')}, "
                              f"this fastser reads version {VERSION}")
    if recipe is not None and payload.get("recipe") != recipe:
        raise CheckpointError(f"checkpoint {path} holds a {payload.get('recipe')!r} model, "
                              f"not {recipe!r}")
    return payload
