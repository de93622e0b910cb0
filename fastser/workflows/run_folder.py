"""A run folder holds one run: the claim that ``train``, ``cv`` and ``demo`` make on their
``--out`` before any work.

:func:`claim` makes sure that, while the block runs, the folder

- is written by this process alone: a lock file (``.fastser.lock``, an exclusive ``flock``
  holding the holder's pid, host, command and start time) makes a second writer fail at once
  with a message naming the holder; the kernel drops the lock of a killed process, so a
  stale lock file is taken over (where ``flock`` is unsupported, a lock whose process is gone
  from this host is);
- holds no earlier run's outputs (:data:`OUTPUT_FILES`, in it or in its subfolders: a cv
  folder's fold01/best.pt counts) unless the run continues (``resume``: last.pt must be there)
  or replaces them (``force``: exactly those files are deleted, in the folder and in the
  subfolders this kind of run writes, ``parts``; anything else is left alone, and outputs of
  other runs in other subfolders are refused even with ``force``);
- holds no symbolic links, through which outputs would land outside it;
- holds no temporary files of killed runs (deleted).

Runs write into the folder and one level of subfolders (cv's foldNN, the demo's method
folders), so that is what is looked at: what lies deeper is never written.

Every file is then written through :mod:`fastser.outputs` (atomic, never through a link).
Under torchrun only rank 0 claims (the other ranks write nothing).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, Collection, Iterator

from fastser.errors import (FolderInUseError, NotAFolderError, PathExistsError, StorageError,
                            UserError)
from fastser.outputs import is_temp, make_folder, storage_error

LOCK = ".fastser.lock"
#: The files fastser's runs write (trainer, train-then-test pipeline, cv, demo): a folder
#: holding one of them, at any depth, holds an earlier run.
OUTPUT_FILES = frozenset({"last.pt", "best.pt", "metrics.jsonl", "results.json",
                          "confusion.png", "cv.json", "cv.md", "demo.json", "demo.md",
                          "model.ts"})
_SHOWN = 4  # paths named in a message


@contextlib.contextmanager
def claim(path: str | os.PathLike, *, resume: bool = False, force: bool = False,
          parts: Collection[str] | str = (), command: str | None = None) -> Iterator[Path]:
    """Hold the run folder ``path`` (created when missing) for the block: see the module
    docstring. ``resume``: the run in the folder continues (its last.pt must exist);
    ``force``: an earlier run's outputs are deleted first, in the folder and in the
    subfolders named in ``parts`` (names, or a regular expression the whole name matches).
    ``command``: what the lock file says the holder runs (default: this process's command
    line)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotAFolderError(f"{path} is a file, not a run folder")
    if resume and not (path / "last.pt").is_file():
        raise UserError(f"--resume: {path} holds no last.pt to continue from")
    if int(os.environ.get("RANK", "0")) != 0:  # a torchrun worker: rank 0 holds the folder
        yield path
        return
    make_folder(path)
    lock = _Lock(path / LOCK, command or _command_line())
    with lock:
        entries = _entries(path)
        for entry in entries:
            if is_temp(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink()
        _refuse_links(path, [e for e in entries if e.is_symlink()])
        earlier = earlier_outputs(path)
        if earlier and not resume:
            if not force:
                raise PathExistsError(
                    f"{path} already holds an earlier run ({_listed(path, earlier)}); a run "
                    "folder holds one run: pass --resume to continue it, --force to replace "
                    "it, or choose another --out (nothing was changed)")
            _remove_outputs(path, earlier, parts)
        yield path


def earlier_outputs(path: str | os.PathLike) -> list[Path]:
    """The files of :data:`OUTPUT_FILES` in ``path`` and its subfolders, sorted."""
    return sorted(e for e in _entries(Path(path))
                  if e.name in OUTPUT_FILES and not e.is_symlink())


def _entries(path: Path) -> list[Path]:
    """What ``path`` holds, and what its subfolders hold (links are not followed)."""
    top = sorted(path.iterdir())
    return top + [e for folder in top if folder.is_dir() and not folder.is_symlink()
                  for e in sorted(folder.iterdir())]


def _remove_outputs(path: Path, outputs: list[Path], parts: Collection[str] | str) -> None:
    """Delete ``outputs`` (--force), then the subfolders they leave empty; PathExistsError,
    deleting nothing, when some lie in subfolders that are not ``parts`` (other runs')."""
    def ours(folder: Path) -> bool:
        if isinstance(parts, str):
            return re.fullmatch(parts, folder.name) is not None
        return folder.name in parts

    others = [o for o in outputs if o.parent != path and not ours(o.parent)]
    if others:
        raise PathExistsError(
            f"{path} holds the outputs of other runs in subfolders ({_listed(path, others)}); "
            "--force replaces only this folder's own run: choose the run's own folder as "
            "--out, or another one (nothing was changed)")
    for output in outputs:
        output.unlink()
    for folder in sorted({o.parent for o in outputs if o.parent != path}):
        with contextlib.suppress(OSError):  # not empty: it holds the user's own files
            folder.rmdir()


def _refuse_links(path: Path, links: list[Path]) -> None:
    if links:
        shown = ", ".join(f"{link.relative_to(path)} -> {os.readlink(link)}"
                          for link in links[:_SHOWN])
        raise StorageError(f"{path} holds symbolic links ({shown}{_more(links)}); fastser "
                           "never writes through links: remove them or choose another --out")


def _listed(path: Path, files: list[Path]) -> str:
    return ", ".join(str(f.relative_to(path)) for f in files[:_SHOWN]) + _more(files)


def _more(items: list[Any]) -> str:
    return f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""


def _command_line() -> str:
    """This process's command line as a user would type it."""
    first = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    program = {"__main__.py": ["fastser"], "fastser": ["fastser"],
               "-c": ["python", "-c"]}.get(Path(first).name, [first])
    return shlex.join([*program, *sys.argv[1:]])


class _Lock:
    """The folder's lock file: an exclusive flock, with the holder described inside."""

    def __init__(self, path: Path, command: str) -> None:
        self.path, self.command = path, command
        self.fd: int | None = None

    def __enter__(self) -> "_Lock":
        for _ in range(10):  # the holder may delete the file between our open and flock
            fd = self._open()
            try:
                state = _flock(fd)
                if state == "held" or (state == "unsupported" and not _gone(_read_holder(fd))):
                    self._in_use(_read_holder(fd))
                if _same_file(fd, self.path):
                    self._describe_holder(fd)
                    self.fd = fd
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise FolderInUseError(f"{self.path.parent} is being claimed by other processes; "
                               "try again")

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # while still holding the lock
            os.close(self.fd)
            self.fd = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise StorageError(f"{self.path} is a symbolic link; remove it") from None
            raise StorageError(f"cannot create the lock file {self.path}: "
                               f"{error.strerror}") from None

    def _describe_holder(self, fd: int) -> None:
        """This process as the holder, in the lock file."""
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(holder).encode())
        except OSError as error:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            raise storage_error(error, self.path) or error

    def _in_use(self, holder: dict[str, Any]) -> None:
        who = (f"pid {holder['pid']} on {holder.get('host')} ({holder.get('command')}, since "
               f"{holder.get('started')})" if "pid" in holder else "a process starting now")
        raise FolderInUseError(f"{self.path.parent} is in use by another fastser run: {who}; "
                               "wait for it to finish or choose another --out")


def _flock(fd: int) -> str:
    """Take the exclusive flock: "locked", "held" (by another process) or "unsupported" (a
    file system without flock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "locked"
    except BlockingIOError:
        return "held"
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return "unsupported"
        raise


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}


def _gone(holder: dict[str, Any]) -> bool:
    """Whether the recorded holder's process no longer runs (known only on its own host; an
    empty lock file has no holder)."""
    if not holder:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (KeyError, TypeError, ValueError, PermissionError):
        return False
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
