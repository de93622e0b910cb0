"""Test-time adaptation of MMTL's meta learner to a target speaker.

Before predicting a speaker's utterances, the meta learner (theta, ``net.meta``) takes
``steps`` gradient steps of learning rate ``lr`` (gamma in the paper) on that speaker's
auxiliary tasks: the class-weighted cross entropy of the shared 4-way classifier against the
speaker's discretised affect labels (valence, arousal, dominance), with class weights from that
speaker's own label counts. The transfer learner and the model itself stay unchanged; the
adapted parameters only serve that speaker's emotion logits.

- :func:`adapt_meta`: the adapted meta parameters of one speaker;
- :func:`adapted_logits`: emotion logits under adapted meta parameters;
- :func:`speaker_adapted_logits`: the emotion logits of a batch's segments, each speaker
  adapted on its own segments that carry affect labels (segments of speakers without any, or
  of unknown speakers, are scored unadapted).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.func import functional_call, grad

from fastser.methods.mmtl.meta import Params, class_weights, split_params
from fastser.methods.mmtl.model import AFFECT_CLASSES, MMTLNet


def adapt_meta(net: MMTLNet, segments: Tensor, affect: Tensor, *, lr: float = 0.001,
               steps: int = 1, chunk: int = 64) -> Params:
    """Test-time adaptation: ``steps`` gradient steps of the meta learner (learning rate
    ``lr``, gamma in the paper) on one target speaker's auxiliary tasks, segments
    (n, frames, bins) with affect classes (n, 3), class-weighted by that speaker's counts.
    Returns the adapted meta parameters (names as in ``net.meta``); the transfer learner and
    ``net`` itself are unchanged. Gradients are accumulated over chunks of ``chunk`` segments
    (the same full-batch gradient, bounded memory)."""
    if segments.shape[0] != affect.shape[0] or segments.shape[0] == 0:
        raise ValueError(f"adapt_meta: need n >= 1 segments with n affect label rows, got "
                         f"{segments.shape[0]} and {affect.shape[0]}")
    if steps < 0 or chunk < 1:
        raise ValueError(f"adapt_meta: steps must be >= 0 and chunk >= 1, got {steps}, {chunk}")
    weights = torch.stack([class_weights(affect[:, j], AFFECT_CLASSES)
                           for j in range(affect.shape[1])])
    weights = weights.to(segments.dtype)
    totals = weights.gather(1, affect.t()).sum(dim=1)  # (3,) sum of the segments' weights per task
    theta, _ = split_params(net)

    def partial_loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
        logits = functional_call(net.meta, params, (x,))
        nll = -logits.log_softmax(-1).gather(1, y)  # (n, 3): each task's label
        return (weights.gather(1, y.t()).t() * nll / totals).sum() / y.shape[1]

    partial_grad = grad(partial_loss)
    with torch.no_grad():
        for _ in range(steps):
            update = {k: torch.zeros_like(v) for k, v in theta.items()}
            for start in range(0, segments.shape[0], chunk):
                g = partial_grad(theta, segments[start:start + chunk],
                                 affect[start:start + chunk])
                for k in update:
                    update[k] += g[k]
            theta = {k: theta[k] - lr * update[k] for k in theta}
    return theta


def adapted_logits(net: MMTLNet, theta: Params, segments: Tensor) -> Tensor:
    """Emotion logits (n, C) of ``net`` with meta parameters ``theta`` (from
    :func:`adapt_meta`) and its own transfer learner."""
    params = {**{f"meta.{k}": v for k, v in theta.items()},
              **{f"transfer.{k}": v for k, v in net.transfer.named_parameters()}}
    return functional_call(net, params, (segments,))


def speaker_adapted_logits(net: MMTLNet, segments: Tensor, affect: Tensor,
                           speakers: Sequence[str], counts: Tensor, *, lr: float, steps: int,
                           chunk: int) -> Tensor:
    """Emotion logits (S, C) of packed segments (S, frames, bins) of B utterances (``counts``
    (B,) segments each, spoken by ``speakers`` (B,) ids, "" for unknown), the meta learner
    adapted per speaker by :func:`adapt_meta` on that speaker's segments whose affect classes
    (S, 3) are known (>= 0). Segments of unknown speakers, of speakers without affect labels,
    and all segments when ``steps`` is 0 are scored by the unadapted ``net``. One speaker's
    logits do not depend on the other speakers in the batch."""
    owners = [s for s, n in zip(speakers, counts.tolist()) for _ in range(n)]
    logits = segments.new_empty(segments.shape[0], net.transfer.out_features)
    unadapted = torch.ones(len(owners), dtype=torch.bool)
    for speaker in dict.fromkeys(owners):
        mine = torch.tensor([o == speaker for o in owners])
        support = (mine & (affect[:, 0] >= 0).cpu()).nonzero().squeeze(1).to(segments.device)
        if steps == 0 or not speaker or len(support) == 0:
            continue
        theta = adapt_meta(net, segments[support], affect[support], lr=lr, steps=steps,
                           chunk=chunk)
        index = mine.nonzero().squeeze(1).to(segments.device)
        with torch.no_grad():
            logits[index] = adapted_logits(net, theta, segments[index]).to(logits.dtype)
        unadapted &= ~mine
    if bool(unadapted.any()):
        rest = unadapted.nonzero().squeeze(1).to(segments.device)
        logits[rest] = net(segments[rest]).to(logits.dtype)  # bf16 under autocast
    return logits
