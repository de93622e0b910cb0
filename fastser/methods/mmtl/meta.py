"""MMTL's meta-learning maths: affect discretisation, class weights, the weighted losses and the
first-order outer gradient of paper Algorithm 1, batched over speakers with torch.func
(:func:`outer_gradients`, ``implementation="fused"``) and as the sequential reference loop
(:func:`outer_gradients_sequential`, ``implementation="reference"``). Test-time adaptation of
the meta learner is in :mod:`fastser.methods.mmtl.adaptation`.

The affect tasks are valence, arousal and dominance, each discretised into 4 classes.

One outer step over m speakers (tasks) with parameters theta (meta learner, ``net.meta``) and
phi (transfer learner, ``net.transfer``) of an :class:`~fastser.methods.mmtl.model.MMTLNet`:

    theta'_i = theta - (alpha / k) sum_j grad L^{S,j}_i(theta)       k affect tasks (Eq. 4)
    phi'_i   = phi - beta grad_phi L^Q_i(theta'_i, phi)               emotion, query batch (Eq. 5)

and the outer gradient g, applied by the caller's optimiser with learning rate gamma, one of

- ``update="aggregate"`` (Algorithm 1 line 11 "aggregates the loss in the above two stages",
  as the authors' code kidconan/MMTL does it):
      g_theta = sum_i [(1/k) sum_j grad L^{S,j}_i(theta) + grad_theta L^Q_i(theta'_i, phi'_i)]
      g_phi   = sum_i [grad_phi L^Q_i(theta'_i, phi) + grad_phi L^Q_i(theta'_i, phi'_i)]
- ``update="maml"`` (Eq. 6-7 alone, first-order; fastser 0.1):
      g = sum_i grad L^Q_i(theta'_i, phi'_i)   w.r.t. (theta'_i, phi'_i)

Every gradient is first-order (theta'_i and phi'_i are treated as constants: no second
derivatives). L^{S,j}_i is the speaker's class-weighted cross entropy of the shared 4-way
classifier FC_2 against task j's labels on the support batch, L^Q_i the class-weighted emotion
cross entropy on the query batch (the paper's Eq. 1-3 use the same samples for both: the
episodes' ``same`` draws). With ``update="maml"`` and the transfer learner on the
representation, FC_2 gets no gradient at all (it only enters theta'_i).

An episode (one step's batch) stacks equal-size per-speaker batches:

    support (m, n_s, frames, bins), support_affect (m, n_s, k) int64, affect_weights (m, k, 4),
    query (m, n_q, frames, bins), query_labels (m, n_q) int64, emotion_weights (m, C)
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vjp, vmap

from fastser.data.corpus import AFFECT
from fastser.errors import CorpusError
from fastser.methods.mmtl.model import MMTLNet

#: The affect dimensions, each an auxiliary task of the meta learner.
AFFECT_NAMES = AFFECT
#: Class c of an affect value v: [0, 2) -> 0, [2, 3) -> 1, [3, 4) -> 2, [4, 6] -> 3.
AFFECT_EDGES = (2.0, 3.0, 4.0)
AFFECT_RANGE = (0.0, 6.0)
#: The outer updates (see the module docstring).
OUTER_UPDATES = ("aggregate", "maml")
EPISODE_KEYS = ("support", "support_affect", "affect_weights", "query", "query_labels",
                "emotion_weights")

Params = dict[str, Tensor]


def discretise_affect(values: Sequence[float]) -> list[int]:
    """(valence, arousal, dominance) -> their 4-way classes: [0, 2) -> 0, [2, 3) -> 1,
    [3, 4) -> 2, [4, 6] -> 3. A value outside [0, 6] or NaN is a CorpusError naming the
    dimension (the recipe adds the utterance)."""
    if len(values) != len(AFFECT_NAMES):
        raise CorpusError(f"expected {len(AFFECT_NAMES)} affect values "
                          f"({', '.join(AFFECT_NAMES)}), got {len(values)}")
    classes = []
    for name, value in zip(AFFECT_NAMES, values):
        value = float(value)
        if not AFFECT_RANGE[0] <= value <= AFFECT_RANGE[1]:  # also rejects NaN
            raise CorpusError(f"{name} {value} is outside [{AFFECT_RANGE[0]:g}, "
                              f"{AFFECT_RANGE[1]:g}] (or NaN)")
        classes.append(sum(value >= edge for edge in AFFECT_EDGES))
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


def auxiliary_loss(logits: Tensor, affect: Tensor, weights: Tensor) -> Tensor:
    """(1/k) sum_j L^j: the shared classifier's logits (n, 4) against each affect task's labels
    affect[:, j] (n, 3) with that task's weights[j] (3, 4)."""
    return sum(weighted_cross_entropy(logits, affect[:, j], weights[j])
               for j in range(affect.shape[-1])) / affect.shape[-1]


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
    tasks = episode["support_affect"].shape[-1]
    if not 1 <= tasks <= len(AFFECT_NAMES) or episode["affect_weights"].shape[1] != tasks:
        raise ValueError(f"MMTL episode: support_affect must be (m, n_s, k) and affect_weights "
                         f"(m, k, 4) with k in 1..{len(AFFECT_NAMES)} affect tasks, got "
                         f"{list(episode['support_affect'].shape)} and "
                         f"{list(episode['affect_weights'].shape)}")
    if episode["emotion_weights"].shape[-1] != net.transfer.out_features:
        raise ValueError(f"MMTL episode: emotion_weights has {episode['emotion_weights'].shape[-1]}"
                         f" classes, the transfer learner {net.transfer.out_features}")


def select_tasks(episode: Mapping[str, Tensor], tasks: Sequence[int]) -> dict[str, Tensor]:
    """``episode`` with the auxiliary tasks ``tasks`` (indices into :data:`AFFECT_NAMES`)
    only: support_affect (m, n_s, k) and affect_weights (m, k, 4) (Table 3's task
    selection)."""
    index = torch.tensor(list(tasks), device=episode["support_affect"].device)
    return {**episode, "support_affect": episode["support_affect"].index_select(-1, index),
            "affect_weights": episode["affect_weights"].index_select(1, index)}


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


def _check_update(update: str, where: str) -> None:
    if update not in OUTER_UPDATES:
        raise ValueError(f"{where}: update must be one of {OUTER_UPDATES}, got {update!r}")


def outer_gradients(net: MMTLNet, episode: Mapping[str, Tensor], *, alpha: float = 0.01,
                    beta: float = 0.01, update: str = "aggregate",
                    speaker_chunk: int | None = None) -> tuple[Tensor, list[Tensor]]:
    """One first-order outer step (``update``: see the module docstring), batched over the m
    speakers with torch.func (vmap of the per-speaker inner updates; per-speaker parameters
    theta'_i, phi'_i stacked along dim 0). ``speaker_chunk`` bounds memory: vmap runs that
    many speakers at a time (None: all m). Returns (mean over speakers of the loss whose
    gradient g is: L^Q_i(theta'_i, phi'_i), plus the auxiliary loss at theta and
    L^Q_i(theta'_i, phi) with "aggregate"; gradients aligned with ``net.parameters()``, summed
    over speakers). ``net`` is not modified."""
    _check_episode(net, episode)
    _check_update(update, "outer_gradients")
    check_speaker_chunk(speaker_chunk, "outer_gradients")
    theta, phi = split_params(net)
    aggregate = update == "aggregate"

    def meta_logits(params: Params, x: Tensor) -> Tensor:
        return functional_call(net.meta, params, (x,))

    def transfer_features(params: Params, x: Tensor) -> Tensor:
        if net.reads_affect_logits:
            return meta_logits(params, x)
        return functional_call(net.meta.encoder, _encoder_part(params), (x,))

    def emotion_loss(params: Params, z: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        return weighted_cross_entropy(functional_call(net.transfer, params, (z,)), labels,
                                      weights)

    def speaker_step(theta: Params, phi: Params, support: Tensor, support_affect: Tensor,
                     affect_weights: Tensor, query: Tensor, labels: Tensor, weights: Tensor):
        g_aux, aux = grad_and_value(lambda p: auxiliary_loss(
            meta_logits(p, support), support_affect, affect_weights))(theta)
        theta_i = {k: theta[k] - alpha * g_aux[k] for k in theta}
        # the transfer learner's input at theta'_i serves the phi step and the outer gradient
        z, pull_back = vjp(lambda p: transfer_features(p, query), theta_i)
        g_phi, transfer = grad_and_value(emotion_loss)(phi, z, labels, weights)
        phi_i = {k: phi[k] - beta * g_phi[k] for k in phi}
        (g_phi_i, g_z), loss = grad_and_value(emotion_loss, argnums=(0, 1))(phi_i, z, labels,
                                                                           weights)
        # zero for parameters the transfer learner's input does not use (FC_2 when it reads
        # the representation)
        (g_theta_i,) = pull_back(g_z)
        if aggregate:
            g_theta_i = {k: g_theta_i[k] + g_aux[k] for k in g_theta_i}
            g_phi_i = {k: g_phi_i[k] + g_phi[k] for k in g_phi_i}
            loss = loss + aux + transfer
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
                               alpha: float = 0.01, beta: float = 0.01,
                               update: str = "aggregate") -> tuple[Tensor, list[Tensor]]:
    """The reference for :func:`outer_gradients`: a Python loop over speakers with a deep copy
    of the model per speaker and three plain autograd passes (support, query, query)."""
    _check_episode(net, episode)
    _check_update(update, "outer_gradients_sequential")
    total = [torch.zeros_like(p) for p in net.parameters()]
    losses = []
    for i in range(episode["support"].shape[0]):
        model = copy.deepcopy(net)
        meta, transfer = list(model.meta.parameters()), list(model.transfer.parameters())
        aux = auxiliary_loss(model.meta(episode["support"][i]), episode["support_affect"][i],
                             episode["affect_weights"][i])
        g_aux = _sgd(meta, aux, alpha)
        emotion = weighted_cross_entropy(model(episode["query"][i]), episode["query_labels"][i],
                                         episode["emotion_weights"][i])
        g_phi = _sgd(transfer, emotion, beta)
        loss = weighted_cross_entropy(model(episode["query"][i]), episode["query_labels"][i],
                                      episode["emotion_weights"][i])
        # parameters the transfer learner's input does not use get a zero gradient
        grads = list(torch.autograd.grad(loss, meta + transfer, allow_unused=True,
                                         materialize_grads=True))
        if update == "aggregate":
            grads = [g + s for g, s in zip(grads, g_aux + g_phi)]
            loss = loss + aux + emotion
        for acc, g in zip(total, grads):
            acc.add_(g)
        losses.append(loss.detach())
    return torch.stack(losses).mean(), total


def _sgd(params: list[nn.Parameter], loss: Tensor, lr: float) -> list[Tensor]:
    """One plain gradient step of ``params`` on ``loss``, in place; returns the gradients."""
    grads = list(torch.autograd.grad(loss, params))
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(lr * g)
    return grads
