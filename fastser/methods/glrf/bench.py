"""Benchmarks of GLRF.

Suite "glrf": one training step of the GLRF segment scorer on a realistic batch (32
utterances of 2-5.5 s cut into 2 s windows every 0.2 s, about 300 segments of 198 MFCC frames;
the default, paper-sized model) with the fused head-k-pooling loss, against the same model
with the vectorised reference loss ("reference") and the per-utterance Python loop ("loop").
The loss is a scalar mean, so forward+backward back-propagates from it as training does.

:func:`streaming_real_time_factor`: seconds of audio a :class:`fastser.inference.
StreamingRecognizer` processes per second of wall time, fed in fixed chunks, with the
model scripted by TorchScript on one CPU thread (bench/test_glrf_streaming.py).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from fastser.bench.cases import BenchCase
from fastser.ops import head_k_pooling_loss
from fastser.ops.reference import head_k_pooling_loss_loop, head_k_pooling_loss_reference
from fastser.audio.io import SAMPLE_RATE
from fastser.methods.glrf.recipe import GLRFRecipe

SUITE = "glrf"
LABELS = ("neutral", "happy", "sad", "angry")
MIN_SECONDS, MAX_SECONDS = 2.0, 5.5


def _make_inputs(utterances: int, config: dict[str, Any], device: torch.device,
                 dtype: torch.dtype, seed: int):
    def make():
        gen = torch.Generator().manual_seed(seed)
        recipe = GLRFRecipe(LABELS, **config)
        seconds = MIN_SECONDS + (MAX_SECONDS - MIN_SECONDS) * torch.rand(utterances, generator=gen)
        labels = torch.randint(0, len(LABELS), (utterances,), generator=gen)
        items = [recipe.item_from_audio(0.1 * torch.randn(int(s * SAMPLE_RATE), generator=gen))
                 ._replace(label=int(label)) for s, label in zip(seconds, labels)]
        features, counts = recipe.segments(recipe.collate(items), recipe.train_hop_samples)
        torch.manual_seed(seed)
        model = recipe.build_model().to(device=device, dtype=dtype).train()
        return (model, features.to(device=device, dtype=dtype).contiguous(), counts.to(device),
                labels.to(device), recipe.neutral_class)
    return make


def _fused(model, features, counts, labels, neutral):
    return head_k_pooling_loss(model(features), counts, labels, k=0.7, neutral_class=neutral)


def _reference(model, features, counts, labels, neutral):
    return head_k_pooling_loss_reference(model(features), counts, labels, 0.7, neutral)


def _loop(model, features, counts, labels, neutral):
    return head_k_pooling_loss_loop(model(features), counts, labels, 0.7, neutral)


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    utterances, config, name = ((4, dict(GLRFRecipe.presets["demo"].settings), "demo model") if quick
                                else (32, {}, "default model"))
    segments = int(_make_inputs(utterances, config, torch.device("cpu"), torch.float32,
                                seed=utterances)()[2].sum())
    return [BenchCase(
        suite=SUITE,
        size=f"B={utterances} S={segments} T=198 {name}",
        make_inputs=_make_inputs(utterances, config, device, dtype, seed=utterances),
        impls={"fused": _fused, "reference": _reference, "loop": _loop},
        device=device,
        note="GLRF training step: model + head-k-pooling loss (k=0.7, neutral class 0)",
        meta={"utterances": utterances, "segments": segments, "config": dict(config)},
    )]


def streaming_real_time_factor(config: dict[str, Any] | None = None, *, seconds: float = 30.0,
                               chunk: float = 0.1, threads: int = 1, script: bool = True,
                               seed: int = 0, amp: str = "off") -> dict[str, float]:
    """Stream ``seconds`` of noise in ``chunk``-second pieces through a freshly initialised
    GLRF (``config``: recipe settings, over a streamable model's: no speaker_norm) scored
    under ``amp`` and time it (after one warm-up stream);
    ``real_time_factor`` = audio seconds / wall seconds (``real_time_factor_cpu``: / the
    process's CPU seconds, which a busy machine inflates less)."""
    from fastser.inference.streaming import StreamingRecognizer

    recipe = GLRFRecipe(LABELS, **{"speaker_norm": False, **(config or {})})
    torch.manual_seed(seed)
    scorer = recipe.export_module(recipe.build_model().eval())
    if script:
        scorer = torch.jit.script(scorer)
    recognizer = StreamingRecognizer(recipe, scorer, amp=amp)
    wave = 0.1 * torch.randn(int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(seed))
    step = max(1, int(chunk * SAMPLE_RATE))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timings = []
        for _ in range(2):  # the first pass warms up TorchScript's profiling executor
            recognizer.reset()
            started, started_cpu = time.perf_counter(), time.process_time()
            for start in range(0, wave.shape[0], step):
                recognizer.push(wave[start:start + step])
            result = recognizer.finish()
            timings.append((time.perf_counter() - started, time.process_time() - started_cpu))
    finally:
        torch.set_num_threads(previous_threads)
    wall, cpu = timings[-1]
    return {"audio_s": seconds, "wall_s": wall, "cpu_s": cpu, "real_time_factor": seconds / wall,
            "real_time_factor_cpu": seconds / cpu, "segments": len(result.segments),
            "ms_per_segment": wall / len(result.segments) * 1e3}
