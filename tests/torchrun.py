"""Runs under ``torchrun`` for the multi-process tests: two CPU processes (gloo), one thread
each, and the run must succeed."""

import os
import subprocess
import sys


def run_two_processes(*args: str, timeout: int = 600) -> None:
    """``python -m torch.distributed.run --nproc_per_node=2 --standalone ARGS``; fails the test
    with the end of stderr when the job fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
