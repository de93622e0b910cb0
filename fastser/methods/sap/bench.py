"""Benchmark cases of SAP: the pooling step (self-attention over speech frames, GAP and SAP)
packed against its vectorised masked version and the per-utterance loop, and a training
step of the whole pipeline with a tiny and a WavLM Base-size random front end, on cached SSL
features against recomputing them from audio (utterances/s = batch / time)."""

from __future__ import annotations

import torch

from fastser.bench.cases import BenchCase

SUITE = "sap"

# (batch, longest sequence in SSL frames, feature dim, heads): WavLM Base and Large features
POOL_SIZES = [(16, 326, 768, 8), (8, 1053, 1024, 16)]
POOL_QUICK = [(4, 40, 32, 4)]
# (preset, batch, seconds of audio at most): training steps of the whole model
PIPELINE_SIZES = [("tiny", 16, 6.0), ("base", 8, 6.0)]
PIPELINE_QUICK = [("tiny", 4, 1.0)]
SPEECH_FRACTION = 0.7


def _ragged(batch: int, longest: int, gen: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(max(1, longest // 2), longest + 1, (batch,), generator=gen)
    lengths[0] = longest
    return lengths


def _pool_inputs(batch: int, frames: int, dim: int, device: torch.device, dtype: torch.dtype):
    def make():
        gen = torch.Generator().manual_seed(0)
        lengths = _ragged(batch, frames, gen)
        valid = torch.arange(frames) < lengths[:, None]
        features = torch.randn(batch, frames, dim, generator=gen) * valid[..., None]
        speech = (torch.rand(batch, frames, generator=gen) < SPEECH_FRACTION) & valid
        return (features.to(device, dtype).requires_grad_(), lengths.to(device),
                speech.to(device))

    return make


def _pool_cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    from fastser.methods.sap.model import SAPHead

    result = []
    for batch, frames, dim, heads in POOL_QUICK if quick else POOL_SIZES:
        torch.manual_seed(0)
        head = SAPHead(dim, 4, heads=heads).to(device, dtype)

        def pooled(pool):
            return lambda features, lengths, speech: pool(features, lengths, speech)[:2]

        result.append(BenchCase(
            suite=SUITE, size=f"pool B={batch} F<={frames} D={dim} H={heads}",
            make_inputs=_pool_inputs(batch, frames, dim, device, dtype),
            impls={"fused": pooled(head.pool), "masked": pooled(head.pool_masked),
                   "loop": pooled(head.pool_loop)},
            device=device,
            note=f"pooling step (MHSA over speech frames, GAP, SAP); lengths in [F/2, F], "
                 f"{SPEECH_FRACTION:.0%} speech frames. fused = speech frames packed to the "
                 "front, masked = attention over all frames with a key mask, loop = Python "
                 "loop over utterances. pipeline: one training step of the head on cached "
                 "SSL layer outputs vs frozen random WavLM front end + head on audio; "
                 "utterances/s = batch / time",
            meta={"batch": batch, "frames": frames, "dim": dim, "heads": heads}))
    return result


def _pipeline_cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    from fastser.audio.ssl import SSLFrontEnd
    from fastser.audio.vad import ssl_num_frames
    from fastser.methods.sap.model import SAPHead, SAPModel
    from fastser.train.kit.ssl import SSL_PRESETS

    result = []
    for preset, batch, seconds in PIPELINE_QUICK if quick else PIPELINE_SIZES:
        front_end = SSLFrontEnd.from_config("wavlm", SSL_PRESETS[preset], layer="weighted")
        front_end.to(device, dtype)
        heads = 8 if front_end.hidden_size % 8 == 0 else 2
        torch.manual_seed(0)
        head = SAPHead(front_end.hidden_size, 4, heads=heads).to(device, dtype)
        cached = SAPModel(head, combine=front_end.combine)
        uncached = SAPModel(head, front_end=front_end)

        def make(batch=batch, seconds=seconds, front_end=front_end):
            gen = torch.Generator().manual_seed(0)
            samples = _ragged(batch, int(seconds * 16000), gen)
            waveforms = 0.1 * torch.randn(batch, int(samples.max()), generator=gen)
            frames = torch.tensor([ssl_num_frames(int(n)) for n in samples])
            speech = torch.rand(batch, int(frames.max()), generator=gen) < SPEECH_FRACTION
            waveforms, samples = waveforms.to(device, dtype), samples.to(device)
            with torch.no_grad():
                layers, frames = front_end.layer_outputs(waveforms, samples)
            return waveforms, samples, layers, frames, speech.to(device)

        result.append(BenchCase(
            suite=SUITE, size=f"pipeline {preset} B={batch} <= {seconds:g} s",
            make_inputs=make,
            impls={"cached": lambda w, n, layers, frames, speech, m=cached:
                   m(layers, frames, speech)[:2],
                   "uncached": lambda w, n, layers, frames, speech, m=uncached:
                   m(w, n, speech)[:2]},
            device=device,
            meta={"batch": batch, "preset": preset, "seconds": seconds}))
    return result


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    return _pool_cases(device, dtype, quick) + _pipeline_cases(device, dtype, quick)
