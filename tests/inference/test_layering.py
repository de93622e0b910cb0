"""Inference stands above the methods, never on the training engine: loading a checkpoint,
recognising, embedding and streaming recordings (in Python and through the commands) import
no trainer, sampler, schedule or evaluation module."""

import subprocess
import sys
import textwrap
from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoints-0.1.0" / "glrf.pt"
ENGINE = ("fastser.train.trainer", "fastser.train.sampler", "fastser.train.schedule",
          "fastser.train.evaluation", "fastser.workflows")


def test_recognizer_and_streaming_run_without_the_training_engine(tmp_path):
    code = textwrap.dedent(f"""
        import sys, torch
        from fastser.audio.io import save_audio
        from fastser.cli import main
        from fastser.inference import Recognizer, StreamingRecognizer
        recognizer = Recognizer.from_checkpoint({str(FIXTURE)!r})
        recognizer.predict(0.1 * torch.randn(40000), 16000)
        recognizer.embed_batch([0.1 * torch.randn(40000)], 16000)
        StreamingRecognizer.from_checkpoint({str(FIXTURE)!r}, script=False).push(torch.zeros(40000))
        wav = {str(tmp_path / "a.wav")!r}
        save_audio(wav, 0.1 * torch.randn(40000), 16000)
        for argv in (["predict", wav, "--out", {str(tmp_path / "p.csv")!r}],
                     ["embed", wav, "--out", {str(tmp_path / "e")!r}], ["stream", wav]):
            assert main([*argv, "--checkpoint", {str(FIXTURE)!r}]) == 0
        loaded = [m for m in sys.modules if m.startswith({ENGINE!r})]
        print(loaded)
        assert not loaded, loaded
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
