"""`fastser stream`: for every segment-level method (GLRF; MMTL, STL and MTL with fixed windows)
the segments and scores of offline `fastser predict` on the same audio, from a file or from
raw PCM on standard input; chunked streaming of the spectrogram methods equals offline for any
chunking; the methods and settings that cannot stream say why; --realtime paces the stream."""

import io
import json
import random
import re
import sys

import numpy as np
import pytest
import torch

from fastser.audio.io import save_audio
from fastser.cli import main
from fastser.errors import AudioError, SettingsError, UserError
from fastser.inference import live
from fastser.inference.streaming import StreamingRecognizer
from random_models import noise, random_trained


def _stream_lines(capsys, argv):
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return lines[:-1], lines[-1]


def _assert_stream_is_offline(segments, final, offline):
    assert [(s["start"], s["end"]) for s in segments] == \
        [(s["start"], s["end"]) for s in offline["segments"]]
    for streamed, scored in zip(segments, offline["segments"]):
        assert streamed["label"] == scored["label"]
        for label, score in scored["scores"].items():
            assert streamed["scores"][label] == pytest.approx(score, abs=1e-6)
    assert final["label"] == offline["label"] and final["segments"] == len(segments)
    for label, score in offline["scores"].items():
        assert final["scores"][label] == pytest.approx(score, abs=1e-6)
    running = np.cumsum([list(s["scores"].values()) for s in segments], axis=0)
    running /= np.arange(1, len(segments) + 1)[:, None]
    np.testing.assert_allclose([list(s["utterance_scores"].values()) for s in segments],
                               running, atol=1e-6)


@pytest.mark.parametrize("method, options", [("glrf", []), ("stl", ["--hop", "0.75"]),
                                             ("mmtl", ["--hop", "1.5", "--window", "2.0"])])
def test_stream_of_a_file_equals_offline_predict(method, options, checkpoints, tmp_path,
                                                 capsys):
    path = tmp_path / "speech.wav"
    save_audio(path, noise(7.3, 3), 16000)
    checkpoint = str(checkpoints(method))
    assert main(["predict", "--checkpoint", checkpoint, str(path), "--json", *options]) == 0
    offline = json.loads(capsys.readouterr().out)[str(path)]
    assert len(offline["segments"]) > 2
    segments, final = _stream_lines(capsys, ["stream", "--checkpoint", checkpoint, str(path),
                                             "--json", "--chunk-ms", "130", *options])
    _assert_stream_is_offline(segments, final, offline)


def test_stream_of_raw_pcm_on_stdin_equals_offline_predict(checkpoints, tmp_path, capsys,
                                                           monkeypatch):
    pcm = (noise(5.0, 4).clamp(-1, 1) * 32767).round().to(torch.int16)
    path = tmp_path / "pcm.wav"
    save_audio(path, pcm.float() / 32768, 16000, encoding="pcm16")
    checkpoint = str(checkpoints("glrf"))
    assert main(["predict", "--checkpoint", checkpoint, str(path), "--json"]) == 0
    offline = json.loads(capsys.readouterr().out)[str(path)]
    data = pcm.numpy().astype("<i2").tobytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    segments, final = _stream_lines(capsys, ["stream", "--checkpoint", checkpoint, "-",
                                             "--rate", "16000", "--json"])
    _assert_stream_is_offline(segments, final, offline)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data[:-1])))
    assert main(["stream", "--checkpoint", checkpoint, "-", "--rate", "16000"]) == 2
    assert "odd number of bytes" in capsys.readouterr().err


def test_streams_that_cannot_be_offline_say_why(checkpoints, tmp_path, capsys):
    path = tmp_path / "a.wav"
    save_audio(path, noise(3.0, 5), 16000)
    for method, message in (("stl", "equal pieces whose boundaries depend on its whole "
                                    "length, so it cannot stream them; set hop"),
                            ("mstr", "needs a segment-level method; .* holds a 'mstr' model")):
        assert main(["stream", "--checkpoint", str(checkpoints(method)), str(path)]) == 2
        assert re.search(message, capsys.readouterr().err)
    checkpoint = str(checkpoints("glrf"))
    assert main(["stream", "--checkpoint", checkpoint, "-"]) == 2
    assert "give its --rate" in capsys.readouterr().err
    assert main(["stream", "--checkpoint", checkpoint, "-", "--rate", "8000"]) == 2
    assert "must be 16000 Hz" in capsys.readouterr().err
    recipe, model = random_trained("glrf", speaker_norm=True)
    with pytest.raises(UserError, match="speaker_norm"):
        StreamingRecognizer(recipe, recipe.export_module(model))


@pytest.mark.parametrize("method", ["stl", "mmtl"])
def test_spectrogram_streams_equal_offline_for_any_chunking(method):
    recipe, model = random_trained(method, hop=0.5, max_duration=1.5)
    scorer = recipe.export_module(model).eval()
    for num_samples in (700, 20000, 24000, 40001, 71234):
        wave = noise(num_samples / 16000, num_samples)
        with torch.no_grad():
            offline = recipe.predict(model, recipe.collate([recipe.item_from_audio(wave)]))
        rng = random.Random(num_samples)
        for sizes in ([1600], [rng.randint(1, 9000) for _ in range(40)], [num_samples]):
            recognizer = StreamingRecognizer(recipe, scorer)
            position, step = 0, 0
            while position < num_samples:
                recognizer.push(wave[position:position + sizes[step % len(sizes)]])
                position, step = position + sizes[step % len(sizes)], step + 1
            final = recognizer.finish()
            probs = torch.stack([s.probs for s in final.segments])
            torch.testing.assert_close(probs, offline.segment_probs, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(final.probs, offline.probs[0], atol=1e-6, rtol=1e-5)
            assert [(s.start, s.end) for s in final.segments] == \
                recipe.segment_spans(num_samples)
    recognizer = StreamingRecognizer(recipe, scorer)  # too short, as offline refuses it
    recognizer.push(wave[:600])
    with pytest.raises(AudioError, match="600 samples were pushed, fewer than the 640"):
        recognizer.finish()
    with pytest.raises(SettingsError, match="must be at most max_duration"):
        random_trained(method, hop=2.0, max_duration=1.5)


class FakeClock:
    """time.monotonic and time.sleep of a clock that only moves when slept."""

    def __init__(self):
        self.now, self.slept = 100.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_realtime_pushes_each_chunk_when_its_last_sample_would_have_been_recorded(
        checkpoints, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(live, "time", clock)
    recognizer = StreamingRecognizer.from_checkpoint(checkpoints("glrf"), script=False)
    chunks = [noise(0.25, i) for i in range(12)]  # 3 s
    seen = []
    live.run_stream(recognizer, iter(chunks), lambda s: seen.append(clock.now), realtime=True)
    assert clock.slept == pytest.approx([0.25] * 12)
    assert seen[0] == pytest.approx(100.0 + 2.0)  # the first 2 s window, at 2 s
    assert seen[1:] == pytest.approx([100.0 + 2.5, 100.0 + 3.0])  # then every 0.4 s hop
    live.run_stream(recognizer, iter(chunks), lambda s: None)
    assert len(clock.slept) == 12  # not paced without realtime
