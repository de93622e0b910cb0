"""Benchmark of one MMTL outer step (paper Algorithm 1, first-order) over m = 8 speakers: the
per-speaker inner updates batched with torch.func against the sequential loop with a model
copy per speaker (the recipe's ``naive`` path).

The step has no differentiable output (it returns the gradients it computed), so each case is
timed as a whole in the "fwd" column: inner updates, adapted forward passes and the outer
gradients.  Sizes: the paper's 300 x 200 input and Table 1 network (2 segments per speaker
and batch: a step costs seconds on a CPU), the demo's input and network (8 segments), and a
small network where per-operation overhead dominates.
"""

from __future__ import annotations

import torch

from fastser.bench.cases import BenchCase
from fastser.models.mmtl import MMTLNet
from fastser.models.mmtl_meta import outer_gradients, outer_gradients_sequential
from fastser.train.recipes.mmtl import STLRecipe

SUITE = "mmtl"
SPEAKERS = 8
CLASSES = 4
_DEMO = {"frames": 300 // STLRecipe.demo_config["pool"][0],
         "bins": 200 // STLRecipe.demo_config["pool"][1], "conv": STLRecipe.demo_config["conv"]}
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
            "support_vad": torch.randint(0, 4, (*shape, 3), generator=gen),
            "vad_weights": torch.rand(SPEAKERS, 3, 4, generator=gen) + 0.1,
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


def _sequential(net, episode):
    with torch.enable_grad():  # the harness times "forward" under no_grad
        return outer_gradients_sequential(net, episode)[1]


def cases(device: torch.device, dtype: torch.dtype, quick: bool) -> list[BenchCase]:
    return [BenchCase(
        suite=SUITE,
        size=f"{name} m={SPEAKERS} n={per_speaker}",
        make_inputs=_make_inputs(config, per_speaker, device, dtype),
        impls={"batched": _batched, "naive": _sequential},
        device=device,
        backward=False,
        note="one whole outer step in the fwd column; batched = torch.func vmap over speakers, "
             "naive = Python loop with a deep copy per speaker",
        meta={"speakers": SPEAKERS, "per_speaker": per_speaker, **config},
    ) for name, config, per_speaker in (QUICK_SIZES if quick else SIZES)]
