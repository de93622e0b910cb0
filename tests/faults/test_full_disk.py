"""A full disk is named as such ("no space left on device while writing X"), leaves no
truncated file behind and never aborts the process: first on any platform (a file object that
fails with ENOSPC), then on a real full file system (a small tmpfs, where the platform lets
the tests mount one)."""

import errno
import os
import shutil
import subprocess
import uuid

import pytest
import torch

import fastser.outputs
from fastser.checkpoint import save_checkpoint
from fastser.errors import StorageError
from fastser.inference import export_torchscript, load_trained
from fastser.outputs import write_json
from faults.helpers import run_command, train_argv, user_error


class _FillingFile:
    """A binary file on a disk with ``room`` bytes left: writes beyond fail with ENOSPC."""

    def __init__(self, file, room):
        self._file, self.room = file, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


class _Disk:
    """The disk every file fastser writes meets: ``fill(n)`` leaves n bytes, ``free()``
    gives the space back."""

    def __init__(self, patch):
        self.patch, self.fdopen = patch, os.fdopen

    def fill(self, room):
        self.patch.setattr(fastser.outputs.os, "fdopen",
                           lambda fd, mode: _FillingFile(self.fdopen(fd, mode), room))

    def free(self):
        self.patch.undo()


@pytest.fixture()
def disk():
    with pytest.MonkeyPatch.context() as patch:
        yield _Disk(patch)


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_checkpoint_on_a_full_disk(tmp_path, disk):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(10)}}, path)
    before = path.read_bytes()
    disk.fill(1000)
    with pytest.raises(StorageError, match=f"^no space left on device while writing {path}$"):
        save_checkpoint({"model": {"w": torch.randn(100_000)}}, path)
    assert path.read_bytes() == before and _listing(tmp_path) == ["last.pt"]


def test_json_on_a_full_disk(tmp_path, disk):
    disk.fill(10)
    with pytest.raises(StorageError, match="no space left on device"):
        write_json(tmp_path / "results.json", {"ua": [0.5] * 100})
    assert _listing(tmp_path) == []


def test_training_on_a_full_disk_is_one_line(corpus_source, tmp_path, disk, capsys):
    disk.fill(2000)
    out = tmp_path / "run"
    line = user_error(train_argv(corpus_source, out), capsys)
    assert "no space left on device while writing" in line and "unexpected pos" not in line
    assert all(name in ("metrics.jsonl",) for name in _listing(out))  # no half checkpoint


def test_export_on_a_full_disk_leaves_nothing_a_rerun_must_force(trained_run, tmp_path,
                                                                 disk, capsys):
    out = tmp_path / "model.ts"
    argv = ["export", "--checkpoint", str(trained_run / "best.pt"), "--out", str(out)]
    disk.fill(100)
    line = user_error(argv, capsys)
    assert f"no space left on device while writing {out}" in line
    assert _listing(tmp_path) == []
    disk.free()  # space again: the same command succeeds, no --force needed
    assert run_command(argv, capsys)[0] == 0 and out.is_file()


# -- a real full file system -------------------------------------------------------------------

@pytest.fixture()
def full_tmpfs(tmp_path):
    """A 1 MiB tmpfs filled to the last byte (skipped where mounting is not allowed)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        filler = mount / f"filler-{uuid.uuid4().hex}"
        with open(filler, "wb", buffering=0) as file:
            try:
                while True:
                    file.write(b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_real_full_disk_checkpoint_and_export(full_tmpfs, trained_run):
    before = set(_listing(full_tmpfs))
    with pytest.raises(StorageError, match="no space left on device while writing"):
        save_checkpoint({"model": {"w": torch.randn(100_000)}}, full_tmpfs / "last.pt")
    trained = load_trained(trained_run / "best.pt")
    with pytest.raises(StorageError, match="no space left on device while writing"):
        export_torchscript(trained, full_tmpfs / "model.ts")  # no c10::Error abort
    assert set(_listing(full_tmpfs)) == before  # no truncated file, no temporary file


def test_real_full_disk_training_is_one_line(full_tmpfs, corpus_source, capsys):
    line = user_error(train_argv(corpus_source, full_tmpfs / "run"), capsys)
    assert "no space left on device while writing" in line

