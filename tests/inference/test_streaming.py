"""Streaming GLRF recognition: the offline segments and scores for any chunking, short audio
and tails, a TorchScript model, checkpoints, and clear errors."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from fastser.checkpoint import save_checkpoint
from fastser.errors import SettingsError, UserError
from fastser.inference.streaming import StreamingRecognizer
from fastser.methods.glrf import GLRFRecipe
from toy_recipe import ToyRecipe

LABELS = ["neutral", "happy", "sad", "angry"]
SMALL = dict(channels=16, blocks=2, heads=2, dropout=0.0, speaker_norm=False)


@pytest.fixture(autouse=True)
def one_thread():
    """Streaming runs small calls, best on one thread (as deployed); several threads only
    slow it down on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained():
    """A recipe and a randomly initialised model (in eval mode), its features standardised."""
    recipe = GLRFRecipe(LABELS, **SMALL)
    torch.manual_seed(0)
    model = recipe.build_model()
    model.feature_mean.uniform_(-20, 20)
    model.feature_std.uniform_(5, 30)
    return recipe, model.eval()


@pytest.fixture(scope="module")
def scripted(trained):
    recipe, model = trained
    return torch.jit.script(recipe.export_module(model))


def _wave(num_samples, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(num_samples, generator=gen)


def _offline(recipe, model, wave):
    with torch.no_grad():
        return recipe.predict(model, recipe.collate([recipe.item_from_audio(wave)]))


def _stream(recognizer, wave, sizes):
    """Push ``wave`` in chunks of the given sizes (cycled); returns the final prediction and
    the segments each push returned, flattened."""
    recognizer.reset()
    emitted, position, step = [], 0, 0
    while position < wave.shape[0]:
        size = sizes[step % len(sizes)]
        emitted += recognizer.push(wave[position:position + size])
        position, step = position + size, step + 1
    final = recognizer.finish()
    return final, emitted


def _assert_matches_offline(final, emitted, offline, recipe, num_samples):
    assert final.segments == emitted or len(emitted) == 0  # short audio: emitted by finish
    probs = torch.stack([s.probs for s in final.segments])
    assert probs.shape == offline.segment_probs.shape
    torch.testing.assert_close(probs, offline.segment_probs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(final.probs, offline.probs[0], atol=1e-6, rtol=1e-5)
    assert [(s.start, s.end) for s in final.segments] == recipe.segment_spans(num_samples)
    for index, segment in enumerate(final.segments):  # the running utterance prediction
        torch.testing.assert_close(segment.utterance_probs, probs[:index + 1].mean(0))
        assert segment.label == LABELS[int(segment.probs.argmax())]


@pytest.mark.parametrize("num_samples", [32000, 32079, 38399, 38400, 70123, 112000])
def test_random_chunk_sizes_give_the_offline_result(trained, scripted, num_samples):
    recipe, model = trained
    wave = _wave(num_samples, seed=num_samples)
    offline = _offline(recipe, model, wave)
    recognizer = StreamingRecognizer(recipe, scripted)
    rng = random.Random(num_samples)
    for sizes in ([1600], [rng.randint(1, 9000) for _ in range(50)], [num_samples],
                  [40000, 7, 1, 33000], [159, 161, 400, 6400]):
        final, emitted = _stream(recognizer, wave, sizes)
        _assert_matches_offline(final, emitted, offline, recipe, num_samples)


def test_one_sample_chunks_give_the_offline_result(trained, scripted):
    recipe, model = trained
    wave = _wave(38500, seed=1)  # two windows and a tail
    final, emitted = _stream(StreamingRecognizer(recipe, scripted), wave, [1])
    _assert_matches_offline(final, emitted, _offline(recipe, model, wave), recipe, 38500)
    assert [s.index for s in emitted] == [0, 1]


@pytest.mark.parametrize("num_samples", [1, 399, 400, 5000, 31999])
def test_audio_shorter_than_a_window_is_one_padded_segment_at_the_end(trained, scripted,
                                                                      num_samples):
    recipe, model = trained
    wave = _wave(num_samples, seed=2)
    final, emitted = _stream(StreamingRecognizer(recipe, scripted), wave, [1000])
    assert emitted == [] and len(final.segments) == 1
    _assert_matches_offline(final, emitted, _offline(recipe, model, wave), recipe, num_samples)


def test_segments_are_emitted_as_soon_as_their_last_sample_arrives(trained, scripted):
    recipe, _ = trained
    recognizer = StreamingRecognizer(recipe, scripted)
    wave = _wave(50000, seed=3)
    assert recognizer.push(wave[:31999]) == []
    assert [s.index for s in recognizer.push(wave[31999:32000])] == [0]
    assert recognizer.push(wave[32000:38399]) == []
    assert [s.index for s in recognizer.push(wave[38399:50000])] == [1, 2]
    assert recognizer.utterance_probs is recognizer.segments[-1].utterance_probs
    assert len(recognizer.finish().segments) == 3  # the 0.9 s tail gives no segment


def test_eager_and_scripted_models_agree_and_int16_numpy_chunks_work(trained, scripted):
    recipe, model = trained
    wave = _wave(45000, seed=4).clamp(-1, 1)
    pcm = (wave * 32767).round().to(torch.int16).numpy()
    results = []
    for scorer in (recipe.export_module(model), scripted):
        recognizer = StreamingRecognizer(recipe, scorer)
        for start in range(0, len(pcm), 4000):
            recognizer.push(pcm[start:start + 4000])
        results.append(recognizer.finish().probs)
    torch.testing.assert_close(results[0], results[1])
    offline = _offline(recipe, model, torch.from_numpy(pcm).float() / 32768)
    torch.testing.assert_close(results[1], offline.probs[0], atol=1e-6, rtol=1e-5)


def test_a_bf16_stream_runs_the_scorer_under_autocast(trained):
    recipe, model = trained
    wave = _wave(45000, seed=5)
    probs = {}
    for amp in ("off", "bf16"):
        recognizer = StreamingRecognizer(recipe, recipe.export_module(model), amp=amp)
        assert recognizer.amp == amp
        for start in range(0, wave.shape[0], 4000):
            recognizer.push(wave[start:start + 4000])
        probs[amp] = recognizer.finish().probs
    assert probs["bf16"].dtype == torch.float32 and not torch.equal(probs["bf16"], probs["off"])
    torch.testing.assert_close(probs["bf16"], probs["off"], atol=3e-2, rtol=0)  # bf16 rounding
    with pytest.raises(SettingsError, match="amp must be one of"):
        StreamingRecognizer(recipe, recipe.export_module(model), amp="half")


def test_from_checkpoint_runs_the_scripted_model(trained, tmp_path):
    recipe, model = trained
    path = tmp_path / "glrf.pt"
    save_checkpoint({"recipe": "glrf", "recipe_state": recipe.state(),
                     "model": model.state_dict()}, path)
    recognizer = StreamingRecognizer.from_checkpoint(path)
    assert isinstance(recognizer.scorer, torch.jit.ScriptModule)
    wave = _wave(60000, seed=5)
    final, emitted = _stream(recognizer, wave, [1600])
    _assert_matches_offline(final, emitted, _offline(recipe, model, wave), recipe, 60000)
    other = tmp_path / "other.pt"
    save_checkpoint({"recipe": "toy", "recipe_state": {}, "model": {}}, other)
    with pytest.raises(UserError, match="unknown model 'toy'"):
        StreamingRecognizer.from_checkpoint(other)


def test_bad_input_gives_clear_errors(trained, scripted):
    recipe, _ = trained
    recognizer = StreamingRecognizer(recipe, scripted)
    with pytest.raises(ValueError, match="16000 Hz audio, got 8000 Hz"):
        recognizer.push(torch.zeros(800), sample_rate=8000)
    chunk = torch.zeros(1600)
    chunk[5] = float("nan")
    with pytest.raises(ValueError, match="chunk: contains NaN"):
        recognizer.push(chunk)
    with pytest.raises(ValueError, match="chunk: expected shape"):
        recognizer.push(torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="chunk: expected a float"):
        recognizer.push(np.zeros(10, dtype=np.uint8))
    assert recognizer.state()["samples"] == 0  # rejected chunks leave the stream untouched
    assert recognizer.push(torch.zeros(0)) == []
    with pytest.raises(ValueError, match="empty audio"):
        recognizer.finish()
    recognizer.push(torch.zeros(100))
    recognizer.finish()
    with pytest.raises(RuntimeError, match="finished; call reset"):
        recognizer.push(torch.zeros(100))
    with pytest.raises(UserError, match="needs a segment-level method; toy scores whole"):
        StreamingRecognizer(ToyRecipe(["a", "b"]), nn.Identity())
