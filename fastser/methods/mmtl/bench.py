"""Benchmark of one MMTL outer step (paper Algorithm 1, first-order) over m = 8 speakers: the
per-speaker inner updates batched with torch.func against the sequential loop with a model
copy per speaker (the recipe's ``implementation="reference"``, named "reference" in the tables).

The step has no differentiable output (it returns the gradients it computed), so each case is
timed as a whole in the "fwd" column: inner updates, adapted forward passes and the outer
gradients.  Sizes: the paper's 300 x 200 input and Table 1 network (2 segments per speaker
and batch: a step costs seconds on a CPU), the demo's input and network (8 segments), and a
small network where per-operation overhead dominates.

A second kind of case times Table 1's convolution stack alone (conv, 2x2 max pool, ReLU, three
times; forward+backward to the weights) over m x n segments arranged three ways: per-speaker
weights as one grouped convolution (what vmap makes of the batched step), per-speaker weights
in a loop over speakers (what the sequential step runs), and one shared weight set over a
single batch, the fastest arrangement of the same arithmetic. It bounds what batching can gain
where the convolutions are compute-bound.
"""

from __future__ import annotations

import torch

from fastser.bench.cases import BenchCase
from fastser.methods.mmtl.meta import outer_gradients, outer_gradients_sequential
from fastser.methods.mmtl.model import TABLE1_CONV, MMTLNet, conv_block
from fastser.methods.mmtl.recipe import SpectrogramRecipe

SUITE = "mmtl"
SPEAKERS = 8
CHUNK = 2  # speakers per vmap chunk in the memory-bounded batched variant
CLASSES = 4
_DEMO_SETTINGS = SpectrogramRecipe.presets["demo"].settings
_DEMO = {"frames": 300 // _DEMO_SETTINGS["pool"][0], "bins": 200 // _DEMO_SETTINGS["pool"][1],
         "conv": _DEMO_SETTINGS["conv"]}
# (name, network config, segments per speaker in the support and in the query batch)
SIZES = [
    ("paper 300x200", {}, 2),
    ("demo", _DEMO, 8),
    ("small 50x25", {"frames": 50, "bins": 25, "conv": ((3, 3, 4), (3, 3, 6)),
                     "lstm_hidden": 8, "embed_dim": 8}, 2),
]
QUICK_SIZES = [("quick 24x16", {"frames": 24, "bins": 16, "conv": ((3, 3, 4),),
                                "lstm_hidden": 8, "embed_dim": 8}, 2)]


def _make_inputs(config: dict, per_speaker: int, device: torch.device, dtype: torch.dtype):
    def make():
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        net = MMTLNet(CLASSES, **config).to(device=device, dtype=dtype)
        frames, bins = net.meta.encoder.frames, net.meta.encoder.bins
        shape = (SPEAKERS, per_speaker)
        episode = {
            "support": torch.randn(*shape, frames, bins, generator=gen),
            "support_affect": torch.randint(0, 4, (*shape, 3), generator=gen),
            "affect_weights": torch.rand(SPEAKERS, 3, 4, generator=gen) + 0.1,
            "query": torch.randn(*shape, frames, bins, generator=gen),
            "query_labels": torch.randint(0, CLASSES, shape, generator=gen),
            "emotion_weights": torch.rand(SPEAKERS, CLASSES, generator=gen) + 0.1,
        }
        episode = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
                   for k, v in episode.items()}
        return net, episode

    return make


def _batched(net, episode):
    return outer_gradients(net, episode)[1]


def _batched_chunked(net, episode):
    return outer_gradients(net, episode, speaker_chunk=CHUNK)[1]


def _sequential(net, episode):
    with torch.enable_grad():  # the harness times "forward" under no_grad
        return outer_gradients_sequential(net, episode)[1]


def _conv_stack_inputs(config: dict, per_speaker: int, device: torch.device,
                       dtype: torch.dtype):
    """Segments (m, n, 1, frames, bins) and per-speaker conv weights and biases
    [(m, C_out, C_in, kt, kf), (m, C_out)] per layer, the weights requiring gradients."""
    def make():
        gen = torch.Generator().manual_seed(0)
        frames, bins = config.get("frames", 300), config.get("bins", 200)
        segments = torch.randn(SPEAKERS, per_speaker, 1, frames, bins, generator=gen)
        params, channels = [], 1
        for kt, kf, out in config.get("conv", TABLE1_CONV):
            weight = torch.randn(SPEAKERS, out, channels, kt, kf, generator=gen)
            weight /= (channels * kt * kf) ** 0.5
            params += [weight, 0.1 * torch.randn(SPEAKERS, out, generator=gen)]
            channels = out
        params = [p.to(device=device, dtype=dtype).requires_grad_() for p in params]
        return (segments.to(device=device, dtype=dtype), *params)

    return make


def _convs_grouped(segments, *params):
    m, n = segments.shape[:2]
    x = segments.transpose(0, 1).flatten(1, 2)  # (n, m * C_in, frames, bins)
    for weight, bias in zip(params[::2], params[1::2]):
        x = conv_block(x, weight.flatten(0, 1), bias.flatten(), groups=m)
    return x


def _convs_per_speaker(segments, *params):
    outputs = []
    for i in range(segments.shape[0]):
        x = segments[i]
        for weight, bias in zip(params[::2], params[1::2]):
            x = conv_block(x, weight[i], bias[i])
        outputs.append(x)
    return torch.stack(outputs)


def _convs_shared(segments, *params):
    x = segments.flatten(0, 1)  # one batch, speaker 0's weights for everyone
    for weight, bias in zip(params[::2], params[1::2]):
        x = conv_block(x, weight[0], bias[0])
    return x


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    sizes = QUICK_SIZES if quick else SIZES
    return _step_cases(sizes, device, dtype) + _conv_cases(sizes[:1], device, dtype)


def _conv_cases(sizes, device: torch.device, dtype: torch.dtype) -> list[BenchCase]:
    return [BenchCase(
        suite=SUITE,
        size=f"{name} convs m={SPEAKERS} n={per_speaker}",
        make_inputs=_conv_stack_inputs(config, per_speaker, device, dtype),
        impls={"grouped": _convs_grouped, "per_speaker": _convs_per_speaker,
               "one_batch": _convs_shared},
        device=device,
        note="convs: Table 1's conv stack alone over m x n segments; grouped = per-speaker "
             "weights as one grouped conv (vmap's form), per_speaker = a loop over speakers, "
             "one_batch = one shared weight set over a single batch (the same arithmetic)",
        meta={"speakers": SPEAKERS, "per_speaker": per_speaker, **config},
    ) for name, config, per_speaker in sizes]


def _step_cases(sizes, device: torch.device, dtype: torch.dtype) -> list[BenchCase]:
    return [BenchCase(
        suite=SUITE,
        size=f"{name} m={SPEAKERS} n={per_speaker}",
        make_inputs=_make_inputs(config, per_speaker, device, dtype),
        impls={"batched": _batched, f"chunk={CHUNK}": _batched_chunked, "reference": _sequential},
        device=device,
        backward=False,
        note="one whole outer step in the fwd column; batched = torch.func vmap over speakers, "
             f"chunk={CHUNK} = the same vmap {CHUNK} speakers at a time (speaker_chunk), "
             "reference = Python loop with a deep copy per speaker",
        meta={"speakers": SPEAKERS, "per_speaker": per_speaker, **config},
    ) for name, config, per_speaker in sizes]
