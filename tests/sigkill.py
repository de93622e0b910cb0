"""A training run killed with SIGKILL in the middle of writing a checkpoint, for the
kill-and-resume tests: the code of a child process."""

import textwrap

_KILL_WHILE_WRITING = """
    import os, signal, sys, torch
    import fastser.train.trainer as trainer_module

    def die_mid_write(obj, f):
        f.write(b"partial")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    real_save_checkpoint = trainer_module.save_checkpoint
    def save_checkpoint(payload, path):
        if payload["epoch"] == {epoch} and path.name == "last.pt":
            torch.save = die_mid_write  # SIGKILL in the middle of writing this last.pt
        real_save_checkpoint(payload, path)
    trainer_module.save_checkpoint = save_checkpoint
"""


def killed_run_code(epoch: int, run: str) -> str:
    """Python code that runs ``run`` (code) and dies by SIGKILL while writing last.pt of
    ``epoch`` (0-based), so that last.pt keeps epoch ``epoch - 1``."""
    return textwrap.dedent(_KILL_WHILE_WRITING).format(epoch=epoch) + textwrap.dedent(run)
