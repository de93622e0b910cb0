"""Output files: written atomically, never through a symbolic link, and a full disk named as
such.

Every file fastser writes (checkpoints, metrics, results, tables, PNGs, exports and their
sidecars) goes through :func:`atomic_file` or :func:`write_bytes` / :func:`write_text`: the
content goes to a temporary file beside the target (``.NAME.XXXX.fastser-tmp``), is flushed
and fsynced, then renamed over the target. A crash, a kill or a full disk leaves the old file
or the new one, never a half-written one, and the temporary file is removed (a killed
process's are removed when the next run claims the folder: :func:`is_temp` tells them).

A target that is a symbolic link is refused: writing would land wherever the link points. A
write that fails for lack of space, a quota, a read-only file system or a permission is a
:class:`~fastser.errors.StorageError` naming the file ("no space left on device while writing
runs/glrf/last.pt"), whichever library did the writing (torch reports a full disk as "unexpected
pos"; the error of the file object underneath is what counts).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from fastser.errors import StorageError

TEMP_SUFFIX = ".fastser-tmp"
#: Temporary files of fastser 0.1 and early 0.2 (checkpoints and metrics.jsonl).
_LEGACY_TEMP = re.compile(r"^\.(last|best)\.pt\..+\.tmp$|^metrics\.jsonl\.tmp$")
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "operation not permitted", errno.EFBIG: "file too large"}


def storage_error(error: BaseException, path: str | os.PathLike) -> StorageError | None:
    """The StorageError for an OSError of the storage kind (full disk, quota, read-only,
    permission) met while writing ``path``; None for any other error."""
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        return _with_errno(StorageError(f"{_STORAGE_ERRNOS[error.errno]} while writing {path}"),
                           error.errno)
    return None


def refuse_link(path: str | os.PathLike) -> None:
    """StorageError when ``path`` is a symbolic link (fastser never writes through one)."""
    if os.path.islink(path):
        raise _with_errno(StorageError(
            f"{path} is a symbolic link (to {os.readlink(path)}); fastser writes its outputs "
            "only as regular files, never through a link: remove the link or choose another "
            "output path"), errno.ELOOP)


def make_folder(path: str | os.PathLike) -> Path:
    """``path`` created as a folder (with its parents) when missing; StorageError when it
    cannot be (full disk, read-only, permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, path) or error
    return path


class _RecordingFile:
    """A binary file whose write errors are kept, so that the cause survives libraries (torch's
    zip writer) that replace it with their own message."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as error:
            self.error = self.error or error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces ``path`` atomically when the block ends
    without an exception (and is discarded otherwise). The folder is created when missing."""
    path = Path(path)
    refuse_link(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as error:
        raise storage_error(error, path) or error
    recording = None
    try:
        with os.fdopen(fd, "wb") as file:
            recording = _RecordingFile(file)
            yield recording  # type: ignore[misc]
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        cause = recording.error if recording is not None and recording.error else error
        storage = storage_error(cause, path)
        if storage is not None:
            raise storage from cause
        raise
    _fsync_folder(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` as the content of ``path``, written atomically."""
    with atomic_file(path) as file:
        file.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) as the content of ``path``, written atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """``value`` as indented JSON in ``path``, written atomically."""
    return write_text(path, json.dumps(value, indent=2))


def is_temp(name: str) -> bool:
    """Whether a file name is one of fastser's temporary files (this release's or older)."""
    return name.endswith(TEMP_SUFFIX) or _LEGACY_TEMP.match(name) is not None


def _with_errno(error: StorageError, code: int) -> StorageError:
    error.errno = code  # the message stays free of the "[Errno N]" prefix
    return error


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
