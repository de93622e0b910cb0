"""Inference stands above the methods, never on the training engine: loading a checkpoint and
recognising a recording import no trainer, sampler, schedule or evaluation module."""

import subprocess
import sys
import textwrap
from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoints-0.1.0" / "glrf.pt"
ENGINE = ("fastser.train.trainer", "fastser.train.sampler", "fastser.train.schedule",
          "fastser.train.evaluation", "fastser.workflows")


def test_recognizer_and_streaming_run_without_the_training_engine():
    code = textwrap.dedent(f"""
        import sys, torch
        from fastser.inference import Recognizer, StreamingRecognizer
        recognizer = Recognizer.from_checkpoint({str(FIXTURE)!r})
        recognizer.predict(0.1 * torch.randn(40000), 16000)
        StreamingRecognizer.from_checkpoint({str(FIXTURE)!r}, script=False).push(torch.zeros(40000))
        loaded = [m for m in sys.modules if m.startswith({ENGINE!r})]
        print(loaded)
        assert not loaded, loaded
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
