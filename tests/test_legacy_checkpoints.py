"""Checkpoints written by fastser 0.1.0 (before the method layer was reshaped) still load and
predict what they predicted then.

tests/fixtures/checkpoints-0.1.0/ holds one tiny one-epoch checkpoint per method, written by
`fastser train` of 0.1.0 on a 24-utterance synthetic corpus, and expected.json the class scores
fastser.Recognizer gave then for a fixed 2.5 s noise waveform (CAN: with three word timings)."""

import json
from pathlib import Path

import pytest
import torch

import fastser
from fastser.audio.alignment import WordTiming

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints-0.1.0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
WORDS = [WordTiming("hello", 0.1, 0.8), WordTiming("there", 0.9, 1.6),
         WordTiming("world", 1.7, 2.4)]


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_checkpoint_of_0_1_0_predicts_as_then(method):
    recognizer = fastser.Recognizer.from_checkpoint(FIXTURES / f"{method}.pt")
    wave = 0.1 * torch.randn(40000, generator=torch.Generator().manual_seed(0))
    scores = recognizer.predict(wave, 16000, words=WORDS if method == "can" else None).scores
    assert list(scores) == list(EXPECTED[method])
    torch.testing.assert_close(torch.tensor(list(scores.values())),
                               torch.tensor(list(EXPECTED[method].values())),
                               rtol=1e-4, atol=1e-5)
