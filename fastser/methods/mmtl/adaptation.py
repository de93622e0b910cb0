"""Test-time adaptation of MMTL's meta learner to a target speaker.

Before predicting a speaker's utterances, the meta learner (theta, ``net.meta``) takes
``steps`` optimiser steps (plain gradient descent or Adam, learning rate ``lr``: gamma in the
paper) on that speaker's auxiliary tasks over the whole of that speaker's data: the
class-weighted cross entropy of the shared 4-way classifier against the speaker's discretised
affect labels (valence, arousal, dominance), with class weights from that speaker's own label
counts. Each step's gradient is the full-data one (accumulated over chunks of segments), so
the adapted parameters depend on the speaker's data only, never on how evaluation is batched.
The transfer learner and the model itself stay unchanged; the adapted parameters only serve
that speaker's emotion logits.

- :func:`adapt_meta`: the adapted meta parameters of one speaker;
- :func:`adapted_logits`: emotion logits under adapted meta parameters;
- :class:`SpeakerAdaptedNet`: a trained net with the adapted meta parameters of every speaker
  of an evaluation set (what :meth:`MMTLRecipe.adapt` returns); its ``speaker_logits`` scores
  each segment with its speaker's parameters (unknown speakers, or speakers without affect
  labels: unadapted).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from fastser.methods.mmtl.meta import Params, class_weights, split_params
from fastser.methods.mmtl.model import AFFECT_CLASSES, MMTLNet

#: Optimisers of test-time adaptation: plain gradient descent, or Adam (the authors' code).
ADAPT_OPTIMIZERS = ("sgd", "adam")


def adapt_meta(net: MMTLNet, segments: Tensor, affect: Tensor, *, lr: float = 0.001,
               steps: int = 1, chunk: int = 64, optimizer: str = "sgd") -> Params:
    """Test-time adaptation: ``steps`` steps of ``optimizer`` ("sgd": plain gradient descent;
    "adam": Adam with torch's defaults, fresh state) of the meta learner, learning rate ``lr``
    (gamma in the paper), on one target speaker's auxiliary tasks, segments (n, frames, bins)
    with affect classes (n, 3), class-weighted by that speaker's counts. Every step's gradient
    is the full-batch one, accumulated over chunks of ``chunk`` segments (bounded memory).
    Returns the adapted meta parameters (names as in ``net.meta``); the transfer learner and
    ``net`` itself are unchanged."""
    if segments.shape[0] != affect.shape[0] or segments.shape[0] == 0:
        raise ValueError(f"adapt_meta: need n >= 1 segments with n affect label rows, got "
                         f"{segments.shape[0]} and {affect.shape[0]}")
    if steps < 0 or chunk < 1:
        raise ValueError(f"adapt_meta: steps must be >= 0 and chunk >= 1, got {steps}, {chunk}")
    if optimizer not in ADAPT_OPTIMIZERS:
        raise ValueError(f"adapt_meta: optimizer must be one of {ADAPT_OPTIMIZERS}, got "
                         f"{optimizer!r}")
    weights = torch.stack([class_weights(affect[:, j], AFFECT_CLASSES)
                           for j in range(affect.shape[1])])
    weights = weights.to(segments.dtype)
    totals = weights.gather(1, affect.t()).sum(dim=1)  # (3,) sum of the segments' weights per task
    theta = {k: v.clone() for k, v in split_params(net)[0].items()}
    if steps == 0:
        return theta
    step = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(theta.values(), lr=lr)

    def partial_loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
        logits = functional_call(net.meta, params, (x,))
        nll = -logits.log_softmax(-1).gather(1, y)  # (n, 3): each task's label
        return (weights.gather(1, y.t()).t() * nll / totals).sum() / y.shape[1]

    partial_grad = grad(partial_loss)
    with torch.no_grad():
        for _ in range(steps):
            for v in theta.values():
                v.grad = torch.zeros_like(v)
            for start in range(0, segments.shape[0], chunk):
                g = partial_grad(theta, segments[start:start + chunk],
                                 affect[start:start + chunk])
                for k, v in theta.items():
                    v.grad += g[k]
            step.step()
    for v in theta.values():
        v.grad = None
    return theta


def adapted_logits(net: MMTLNet, theta: Params, segments: Tensor) -> Tensor:
    """Emotion logits (n, C) of ``net`` with meta parameters ``theta`` (from
    :func:`adapt_meta`) and its own transfer learner."""
    params = {**{f"meta.{k}": v for k, v in theta.items()},
              **{f"transfer.{k}": v for k, v in net.transfer.named_parameters()}}
    return functional_call(net, params, (segments,))


class SpeakerAdaptedNet(nn.Module):
    """A trained :class:`MMTLNet` and the adapted meta parameters of some speakers (speaker
    id -> :func:`adapt_meta`'s result). ``forward`` is the unadapted net; ``speaker_logits``
    scores each segment with its speaker's adapted parameters."""

    def __init__(self, net: MMTLNet, adapted: Mapping[str, Params]) -> None:
        super().__init__()
        self.net = net
        self.adapted = dict(adapted)

    def forward(self, segments: Tensor) -> Tensor:
        return self.net(segments)

    def speaker_logits(self, segments: Tensor, owners: Sequence[str]) -> Tensor:
        """Emotion logits (S, C) of segments (S, frames, bins) spoken by ``owners`` (S,)."""
        logits = segments.new_empty(segments.shape[0], self.net.transfer.out_features)
        unadapted = torch.ones(len(owners), dtype=torch.bool)
        for speaker in dict.fromkeys(owners):
            if speaker not in self.adapted:
                continue
            mine = torch.tensor([o == speaker for o in owners])
            logits[mine.to(segments.device)] = adapted_logits(self.net, self.adapted[speaker],
                                                              segments[mine.to(segments.device)]
                                                              ).to(logits.dtype)
            unadapted &= ~mine
        if bool(unadapted.any()):
            rest = unadapted.to(segments.device)
            logits[rest] = self.net(segments[rest]).to(logits.dtype)  # bf16 under autocast
        return logits
