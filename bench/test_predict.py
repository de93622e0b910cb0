"""pytest-benchmark: bulk prediction throughput (what `fastser predict` runs), batched against
one recording at a time, in the same run.

48 recordings of 1 to 8 s (noise: the content does not change the work), read from wav files
and featurised as the command does, through randomly initialised models with the demo
settings of three methods. "batched": recordings packed into batches of at most 120 s of
padded audio (the command's default); "one-by-one": one recording per batch. extra_info holds
files/s and the real-time factor (wall seconds per second of audio) of the fastest round, and
the CPU seconds per second of audio (which a busy machine inflates less); with ``-s`` each test
prints them.

    PYTHONPATH=. pytest bench/test_predict.py --benchmark-only -s
"""

import time

import pytest
import torch

from fastser.audio.io import save_audio
from fastser.inference.bulk import BulkRun
from fastser.inference.checkpoint import TrainedModel
from fastser.inference.inputs import list_inputs
from fastser.inference.recognizer import BATCH_SECONDS, Recognizer
from fastser.methods import make_recipe, recipe_class

FILES = 48
MODES = {"batched": BATCH_SECONDS, "one-by-one": 1e-3}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    gen = torch.Generator().manual_seed(0)
    lengths = torch.empty(FILES).uniform_(1.0, 8.0, generator=gen)
    for index, seconds in enumerate(lengths.tolist()):
        save_audio(folder / f"r{index:02d}.wav",
                   0.1 * torch.randn(round(seconds * 16000), generator=gen), 16000)
    return list_inputs([folder])


def _recognizer(method: str) -> Recognizer:
    recipe = make_recipe(method, ["neutral", "happy", "sad", "angry"],
                         **recipe_class(method).presets["demo"].settings)
    torch.manual_seed(0)
    return Recognizer(TrainedModel(recipe, recipe.build_model().eval(), {}))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("method", ["glrf", "mstr", "stl"])
def test_predict_throughput(benchmark, recordings, method, mode):
    recognizer = _recognizer(method)
    cpu_seconds = []

    def run():
        started = time.process_time()
        bulk = BulkRun(recognizer, recordings, "predict", batch_seconds=MODES[mode])
        assert sum(result.error is None for result in bulk) == FILES
        cpu_seconds.append(time.process_time() - started)
        return bulk.stats

    benchmark.group = f"predict {method}: {FILES} recordings of 1-8 s"
    stats = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    fastest = benchmark.stats.stats.min
    result = {"files_per_s": FILES / fastest,
              "real_time_factor": fastest / stats.audio_seconds,
              "cpu_real_time_factor": min(cpu_seconds) / stats.audio_seconds,
              "audio_seconds": stats.audio_seconds}
    benchmark.extra_info.update(result)
    print(f"\npredict {method} {mode} (fastest round): {result['files_per_s']:.1f} files/s, "
          f"real-time factor {result['real_time_factor']:.4f} (CPU seconds per audio second "
          f"{result['cpu_real_time_factor']:.4f}; {stats.audio_seconds:.0f} s of audio)")
