"""A disk cache of one fixed-size feature row per audio file (utterance-level features such as
openSMILE functionals), per corpus: computed once, read back on every later run.

The frame-level SSL features of a corpus have their own memory-mapped cache
(:func:`fastser.audio.ssl.cached_features`); both key the files by
:func:`fastser.audio.ssl.file_identity`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fastser.audio.ssl import AudioSource, file_identity


def cached_rows(cache_dir: str | os.PathLike, key: Any, sources: Sequence[AudioSource],
                compute: Callable[[int], np.ndarray]) -> np.ndarray:
    """The rows ``compute(i)`` (D,) of the audio ``sources`` (files or parts of files),
    stacked (N, D): read from
    ``cache_dir/<hash>.npy`` when an earlier call stored them, else computed and stored. The
    hash covers ``key`` (JSON: what the rows depend on besides the audio, e.g. the feature
    set and its version) and every file's identity (path, size, modification time), in order.
    The file is written to a temporary name and renamed into place, so an interrupted run
    leaves no partial cache."""
    if not sources:
        raise ValueError("cached_rows: no audio files")
    blob = json.dumps({"key": key, "files": [file_identity(s) for s in sources]},
                      sort_keys=True)
    folder = Path(cache_dir)
    path = folder / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path)
    rows = np.stack([np.asarray(compute(i)) for i in range(len(sources))])
    folder.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f"{path.stem}.tmp-", suffix=".npy", dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, rows)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows
