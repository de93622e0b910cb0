"""MMTL's meta-learning maths: V/A/D discretisation, per-speaker class weights, the
first-order outer gradient of paper Algorithm 1 (batched over speakers with torch.func, and the
sequential reference loop) and test-time adaptation of the meta learner.

One outer step over m speakers (tasks) with parameters theta (meta learner, ``net.meta``) and
phi (transfer learner, ``net.transfer``) of an :class:`~fastser.models.mmtl.MMTLNet`:

    theta'_i = theta - (alpha / k) sum_j grad L^{S,j}_i(theta)       k = 3 auxiliary tasks V, A, D
    phi'_i   = phi - beta grad_phi L^Q_i(theta'_i, phi)               emotion, query batch
    g        = sum_i grad L^Q_i(theta'_i, phi'_i)                     w.r.t. (theta'_i, phi'_i)

g is first-order (theta'_i and phi'_i are treated as constants: no second derivatives); the
caller's optimiser applies it to (theta, phi) with learning rate gamma. L^{S,j}_i is the
speaker's class-weighted cross entropy of the shared 4-way classifier against task j's labels
on the support batch, L^Q_i the class-weighted emotion cross entropy on the query batch.

An episode (one step's batch) stacks equal-size per-speaker batches:

    support (m, n_s, frames, bins), support_vad (m, n_s, 3) int64, vad_weights (m, 3, 4),
    query (m, n_q, frames, bins), query_labels (m, n_q) int64, emotion_weights (m, C)
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vjp, vmap

from fastser.models.mmtl import VAD_CLASSES, MMTLNet

VAD_NAMES = ("valence", "arousal", "dominance")
#: Class c of a V/A/D value v: [0, 2) -> 0, [2, 3) -> 1, [3, 4) -> 2, [4, 6] -> 3.
VAD_EDGES = (2.0, 3.0, 4.0)
VAD_RANGE = (0.0, 6.0)
EPISODE_KEYS = ("support", "support_vad", "vad_weights", "query", "query_labels",
                "emotion_weights")

Params = dict[str, Tensor]


def discretise_vad(values: Sequence[float], utterance: str) -> list[int]:
    """(valence, arousal, dominance) -> their 4-way classes: [0, 2) -> 0, [2, 3) -> 1,
    [3, 4) -> 2, [4, 6] -> 3. A value outside [0, 6] or NaN is a ValueError naming the
    utterance."""
    if len(values) != len(VAD_NAMES):
        raise ValueError(f"utterance {utterance!r}: expected {len(VAD_NAMES)} V/A/D values, "
                         f"got {len(values)}")
    classes = []
    for name, value in zip(VAD_NAMES, values):
        value = float(value)
        if not VAD_RANGE[0] <= value <= VAD_RANGE[1]:  # also rejects NaN
            raise ValueError(f"utterance {utterance!r}: {name} {value} is outside "
                             f"[{VAD_RANGE[0]:g}, {VAD_RANGE[1]:g}] (or NaN)")
        classes.append(sum(value >= edge for edge in VAD_EDGES))
    return classes


def class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Class weights w_c = N / N_c normalised by their maximum, float32 (num_classes,), from
    int64 labels (N,) in [0, num_classes). A class absent from ``labels`` gets weight 0 (it
    never occurs as a target, so it never enters the loss)."""
    if labels.numel() == 0:
        raise ValueError("class_weights: no labels to count")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"class_weights: labels must lie in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    counts = torch.bincount(labels.flatten(), minlength=num_classes).float()
    inverse = torch.where(counts > 0, labels.numel() / counts.clamp(min=1),
                          torch.zeros_like(counts))
    return inverse / inverse.max()


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """sum_n w[y_n] CE_n / sum_n w[y_n] (F.cross_entropy(weight=...) with mean reduction),
    written with gathers so vmap supports per-speaker weights. logits (n, C), labels (n,)."""
    nll = -logits.log_softmax(dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    w = weights.gather(0, labels)
    return (w * nll).sum() / w.sum()


def auxiliary_loss(logits: Tensor, vad: Tensor, weights: Tensor) -> Tensor:
    """(1/k) sum_j L^j: the shared classifier's logits (n, 4) against each task's labels
    vad[:, j] (n, 3) with that task's weights[j] (3, 4)."""
    return sum(weighted_cross_entropy(logits, vad[:, j], weights[j])
               for j in range(vad.shape[-1])) / vad.shape[-1]


def split_params(net: MMTLNet) -> tuple[Params, Params]:
    """(theta, phi): detached parameters of ``net.meta`` and ``net.transfer``, named as in
    those submodules."""
    theta = {k: v.detach() for k, v in net.meta.named_parameters()}
    phi = {k: v.detach() for k, v in net.transfer.named_parameters()}
    return theta, phi


def _check_episode(net: MMTLNet, episode: Mapping[str, Tensor]) -> None:
    missing = [k for k in EPISODE_KEYS if k not in episode]
    if missing:
        raise ValueError(f"MMTL episode: missing {missing}")
    m = episode["support"].shape[0]
    for key in EPISODE_KEYS:
        if episode[key].shape[0] != m:
            raise ValueError(f"MMTL episode: {key} has {episode[key].shape[0]} speakers, "
                             f"support has {m}")
    if episode["support_vad"].shape[-1] != len(VAD_NAMES):
        raise ValueError(f"MMTL episode: support_vad must be (m, n_s, 3), got "
                         f"{list(episode['support_vad'].shape)}")
    if episode["emotion_weights"].shape[-1] != net.transfer.out_features:
        raise ValueError(f"MMTL episode: emotion_weights has {episode['emotion_weights'].shape[-1]}"
                         f" classes, the transfer learner {net.transfer.out_features}")


def _gradient_list(net: MMTLNet, theta_grads: Params, phi_grads: Params) -> list[Tensor]:
    by_name = {**{f"meta.{k}": v for k, v in theta_grads.items()},
               **{f"transfer.{k}": v for k, v in phi_grads.items()}}
    return [by_name[name] for name, _ in net.named_parameters()]


def check_speaker_chunk(speaker_chunk: object, where: str) -> None:
    """ValueError unless ``speaker_chunk`` (speakers per vmap chunk) is None or an integer >= 1."""
    if speaker_chunk is not None and not (isinstance(speaker_chunk, int)
                                          and not isinstance(speaker_chunk, bool)
                                          and speaker_chunk >= 1):
        raise ValueError(f"{where}: speaker_chunk must be an integer >= 1 or None, got "
                         f"{speaker_chunk!r}")


def outer_gradients(net: MMTLNet, episode: Mapping[str, Tensor], *, alpha: float = 0.01,
                    beta: float = 0.01, speaker_chunk: int | None = None
                    ) -> tuple[Tensor, list[Tensor]]:
    """One first-order outer step, batched over the m speakers with torch.func (vmap of the
    per-speaker inner updates; per-speaker parameters theta'_i, phi'_i stacked along dim 0).
    ``speaker_chunk`` bounds memory: vmap runs that many speakers at a time (None: all m).
    Returns (mean over speakers of L^Q_i(theta'_i, phi'_i), gradients aligned with
    ``net.parameters()``, summed over speakers). ``net`` is not modified."""
    _check_episode(net, episode)
    check_speaker_chunk(speaker_chunk, "outer_gradients")
    theta, phi = split_params(net)

    def meta_logits(params: Params, x: Tensor) -> Tensor:
        return functional_call(net.meta, params, (x,))

    def embed(params: Params, x: Tensor) -> Tensor:
        return functional_call(net.meta.encoder, _encoder_part(params), (x,))

    def emotion_loss(params: Params, z: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        return weighted_cross_entropy(functional_call(net.transfer, params, (z,)), labels,
                                      weights)

    def speaker_step(theta: Params, phi: Params, support: Tensor, support_vad: Tensor,
                     vad_weights: Tensor, query: Tensor, labels: Tensor, weights: Tensor):
        g = grad(lambda p: auxiliary_loss(meta_logits(p, support), support_vad, vad_weights))(
            theta)
        theta_i = {k: theta[k] - alpha * g[k] for k in theta}
        # the representation at theta'_i serves both the phi step and the outer gradient
        z, pull_back = vjp(lambda p: embed(p, query), theta_i)
        g_phi = grad(emotion_loss)(phi, z, labels, weights)
        phi_i = {k: phi[k] - beta * g_phi[k] for k in phi}
        (g_phi_i, g_z), loss = grad_and_value(emotion_loss, argnums=(0, 1))(phi_i, z, labels,
                                                                           weights)
        # zero for the auxiliary head, which the emotion loss does not use
        (g_theta_i,) = pull_back(g_z)
        return g_theta_i, g_phi_i, loss

    with torch.no_grad():
        g_theta, g_phi, losses = vmap(speaker_step, in_dims=(None, None, 0, 0, 0, 0, 0, 0),
                                      chunk_size=speaker_chunk)(
            theta, phi, *(episode[k] for k in EPISODE_KEYS))
    summed_theta = {k: v.sum(0) for k, v in g_theta.items()}
    summed_phi = {k: v.sum(0) for k, v in g_phi.items()}
    return losses.mean(), _gradient_list(net, summed_theta, summed_phi)


def _encoder_part(params: Params) -> Params:
    return {k[len("encoder."):]: v for k, v in params.items() if k.startswith("encoder.")}


def outer_gradients_sequential(net: MMTLNet, episode: Mapping[str, Tensor], *,
                               alpha: float = 0.01, beta: float = 0.01
                               ) -> tuple[Tensor, list[Tensor]]:
    """The reference for :func:`outer_gradients`: a Python loop over speakers with a deep copy
    of the model per speaker and three plain autograd passes (support, query, query)."""
    _check_episode(net, episode)
    total = [torch.zeros_like(p) for p in net.parameters()]
    losses = []
    for i in range(episode["support"].shape[0]):
        model = copy.deepcopy(net)
        aux = auxiliary_loss(model.meta(episode["support"][i]), episode["support_vad"][i],
                             episode["vad_weights"][i])
        _sgd(list(model.meta.parameters()), aux, alpha)
        emotion = weighted_cross_entropy(model(episode["query"][i]), episode["query_labels"][i],
                                         episode["emotion_weights"][i])
        _sgd(list(model.transfer.parameters()), emotion, beta)
        loss = weighted_cross_entropy(model(episode["query"][i]), episode["query_labels"][i],
                                      episode["emotion_weights"][i])
        # the auxiliary head does not enter the emotion loss: its outer gradient is zero
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True,
                                    materialize_grads=True)
        for acc, g in zip(total, grads):
            acc.add_(g)
        losses.append(loss.detach())
    return torch.stack(losses).mean(), total


def _sgd(params: list[nn.Parameter], loss: Tensor, lr: float) -> None:
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(lr * g)


def adapt_meta(net: MMTLNet, segments: Tensor, vad: Tensor, *, lr: float = 0.001,
               steps: int = 1, chunk: int = 64) -> Params:
    """Test-time adaptation: ``steps`` gradient steps of the meta learner (learning rate
    ``lr``, gamma in the paper) on one target speaker's auxiliary tasks, segments
    (n, frames, bins) with V/A/D classes (n, 3), class-weighted by that speaker's counts.
    Returns the adapted meta parameters (names as in ``net.meta``); the transfer learner and
    ``net`` itself are unchanged. Gradients are accumulated over chunks of ``chunk`` segments
    (the same full-batch gradient, bounded memory)."""
    if segments.shape[0] != vad.shape[0] or segments.shape[0] == 0:
        raise ValueError(f"adapt_meta: need n >= 1 segments with n V/A/D label rows, got "
                         f"{segments.shape[0]} and {vad.shape[0]}")
    if steps < 0 or chunk < 1:
        raise ValueError(f"adapt_meta: steps must be >= 0 and chunk >= 1, got {steps}, {chunk}")
    weights = torch.stack([class_weights(vad[:, j], VAD_CLASSES) for j in range(vad.shape[1])])
    weights = weights.to(segments.dtype)
    totals = weights.gather(1, vad.t()).sum(dim=1)  # (3,) sum of the segments' weights per task
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
                g = partial_grad(theta, segments[start:start + chunk], vad[start:start + chunk])
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
