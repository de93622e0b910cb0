"""Two writers, one run folder: the second fails at once with a message naming the holder; a
killed holder's lock is taken over; the folder ends up holding one run."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fastser.checkpoint import load_checkpoint
from fastser.errors import FolderInUseError
from fastser.workflows import run_folder
from fastser.workflows.run_folder import LOCK, claim
from faults.helpers import train_argv, user_error

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A `fastser train` that stops at the start of its first epoch (holding the run folder) until
# a line arrives on its standard input.
PAUSED_TRAINING = """
    import sys
    sys.path.insert(0, {tests!r})
    from fastser import methods
    methods.METHODS["toy"] = "toy_recipe:ToyRecipe"
    import fastser.train.trainer as trainer
    train_epoch = trainer.Trainer._train_epoch
    def paused(self, *args, **kw):
        print("training", flush=True)
        sys.stdin.readline()
        return train_epoch(self, *args, **kw)
    trainer.Trainer._train_epoch = paused
    from fastser.cli import main
    sys.argv = ["fastser", *{argv!r}]  # as the command sees it
    sys.exit(main(sys.argv[1:]))
"""

HOLDING = """
    from fastser.workflows.run_folder import claim
    with claim({out!r}):
        print("holding", flush=True)
        input()
"""


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_training_into_the_same_folder_fails_naming_the_holder(corpus_source,
                                                                         tmp_path, capsys):
    out = tmp_path / "run"
    first = _child(PAUSED_TRAINING.format(tests=TESTS_DIR, argv=train_argv(corpus_source, out)))
    try:
        assert first.stdout.readline() == "training\n", first.stderr.read()
        line = user_error(train_argv(corpus_source, out, "--seed", "1"), capsys)
        assert f"{out} is in use by another fastser run: pid {first.pid} on " in line
        assert "train --model toy" in line and "wait for it to finish" in line
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait() == 0, first.stderr.read()
    finally:
        first.kill()
    # the folder holds the first run alone
    assert load_checkpoint(out / "last.pt")["train_config"]["seed"] == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (out / LOCK).exists()


def test_a_killed_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = _child(HOLDING.format(out=str(out)))
    assert holder.stdout.readline() == "holding\n", holder.stderr.read()
    with pytest.raises(FolderInUseError, match=f"pid {holder.pid} "):
        with claim(out):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (out / LOCK).exists()  # left behind, but no longer held
    with claim(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()


def test_one_process_cannot_claim_a_folder_twice(tmp_path):
    with claim(tmp_path / "run"):
        with pytest.raises(FolderInUseError, match=f"pid {os.getpid()} "):
            with claim(tmp_path / "run"):
                pass


def test_without_flock_a_lock_of_a_gone_process_is_taken_over(tmp_path, monkeypatch):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr(run_folder.fcntl, "flock", no_flock)
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    host = run_folder.socket.gethostname()
    (out / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": host,
                                        "command": "fastser train", "started": "earlier"}))
    with claim(out):
        pass
    (out / LOCK).write_text(json.dumps({"pid": os.getppid(), "host": host,
                                        "command": "fastser cv", "started": "now"}))
    with pytest.raises(FolderInUseError, match=rf"pid {os.getppid()} on {host} \(fastser cv"):
        with claim(out):
            pass
