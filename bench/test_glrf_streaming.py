"""pytest-benchmark: streaming GLRF recognition on one CPU thread with a TorchScript model,
30 s of audio in 100 ms chunks; the real-time factor (audio seconds per wall second, target
>= 50) is in the benchmark's extra_info."""

import pytest

from fastser.methods.glrf.bench import streaming_real_time_factor
from fastser.methods.glrf.recipe import GLRFRecipe


@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("config", ["default", "demo"])
def test_glrf_streaming_real_time_factor(benchmark, config, amp):
    settings = {} if config == "default" else dict(GLRFRecipe.presets["demo"].settings)
    benchmark.group = "glrf streaming, 30 s of audio in 100 ms chunks, 1 thread"
    result = benchmark.pedantic(streaming_real_time_factor, args=(settings,),
                                kwargs={"amp": amp}, rounds=3)
    benchmark.extra_info.update(result)
    print(f"\nGLRF streaming ({config} model, amp {amp}): real-time factor "
          f"{result['real_time_factor']:.0f}x, {result['ms_per_segment']:.2f} ms per segment")
