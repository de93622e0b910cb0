"""MMTL's meta-learning maths: affect discretisation, class weights, the weighted cross
entropy, and the first-order outer step batched over speakers (torch.func) against the
sequential reference loop and against the step written out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fastser.errors import CorpusError
from fastser.methods.mmtl.meta import (EPISODE_KEYS, class_weights, discretise_affect,
                                       outer_gradients, outer_gradients_sequential,
                                       weighted_cross_entropy)
from fastser.methods.mmtl.model import MMTLNet

SMALL = dict(frames=24, bins=16, conv=((3, 5, 4), (4, 3, 6)), lstm_hidden=8, embed_dim=6)


def _episode(m, n, frames, bins, classes, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "support": torch.randn(m, n, frames, bins, generator=gen, dtype=dtype),
        "support_affect": torch.randint(0, 4, (m, n, 3), generator=gen),
        "affect_weights": torch.rand(m, 3, 4, generator=gen, dtype=dtype) + 0.1,
        "query": torch.randn(m, n, frames, bins, generator=gen, dtype=dtype),
        "query_labels": torch.randint(0, classes, (m, n), generator=gen),
        "emotion_weights": torch.rand(m, classes, generator=gen, dtype=dtype) + 0.1,
    }


# -- affect classes and class weights ----------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (0.0, 0), (1.0, 0), (math.nextafter(2.0, 0.0), 0), (2.0, 1), (2.5, 1),
    (math.nextafter(3.0, 0.0), 1), (3.0, 2), (math.nextafter(4.0, 0.0), 2), (4.0, 3), (5.0, 3),
    (6.0, 3)])
def test_discretise_affect_edges(value, expected):
    assert discretise_affect([value, value, value]) == [expected] * 3


@pytest.mark.parametrize("bad", [-0.001, 6.001, float("nan"), float("inf"), -float("inf")])
def test_discretise_affect_rejects_values_outside_the_scale(bad):
    # the recipe prefixes the utterance (test_recipe: test_affect_values_outside_the_scale...)
    with pytest.raises(CorpusError, match=r"^arousal .* outside \[0, 6\]"):
        discretise_affect([3.0, bad, 3.0])
    with pytest.raises(CorpusError, match=r"expected 3 affect values \(valence, arousal, "
                                          r"dominance\)"):
        discretise_affect([3.0, 3.0])


def test_class_weights_hand_worked_and_absent_classes():
    weights = class_weights(torch.tensor([0, 0, 0, 1]), 3)
    # N / N_c = 4/3, 4, absent -> normalised by the maximum 4
    torch.testing.assert_close(weights, torch.tensor([1 / 3, 1.0, 0.0]))
    assert bool(torch.isfinite(class_weights(torch.tensor([2]), 4)).all())
    torch.testing.assert_close(class_weights(torch.tensor([2]), 4), torch.tensor([0., 0, 1, 0]))
    with pytest.raises(ValueError, match="no labels"):
        class_weights(torch.tensor([], dtype=torch.int64), 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        class_weights(torch.tensor([0, 3]), 3)


def test_weighted_cross_entropy_equals_torch():
    logits, labels = torch.randn(9, 4), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0])
    weights = torch.tensor([0.5, 1.0, 0.25, 0.0])
    torch.testing.assert_close(weighted_cross_entropy(logits, labels, weights),
                               F.cross_entropy(logits, labels, weight=weights))


# -- the outer step ----------------------------------------------------------------------------
@pytest.mark.parametrize("update", ["aggregate", "maml"])
@pytest.mark.parametrize("transfer_input", ["affect_logits", "representation"])
@pytest.mark.parametrize("dtype, tol, speaker_chunk", [(torch.float64, 1e-10, None),
                                                       (torch.float32, 1e-5, None),
                                                       (torch.float64, 1e-10, 2)])
def test_batched_and_sequential_outer_steps_give_the_same_updates(dtype, tol, speaker_chunk,
                                                                  transfer_input, update):
    torch.manual_seed(3)
    net = MMTLNet(5, transfer_input=transfer_input, **SMALL).to(dtype)
    episode = _episode(3, 4, 24, 16, 5, dtype)  # 3 speakers: chunks of 2 leave a ragged last one
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss, grads = outer_gradients(net, episode, alpha=0.05, beta=0.2, update=update,
                                  speaker_chunk=speaker_chunk)
    ref_loss, ref_grads = outer_gradients_sequential(net, episode, alpha=0.05, beta=0.2,
                                                     update=update)
    torch.testing.assert_close(loss, ref_loss, rtol=tol, atol=tol)
    names = [n for n, _ in net.named_parameters()]
    for name, g, r in zip(names, grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol, msg=name)
    # FC_2 (the shared affect classifier, meta.head) is trained unless the transfer learner
    # skips it and the outer gradient ignores the auxiliary losses (fastser 0.1)
    untrained = update == "maml" and transfer_input == "representation"
    for name, r in zip(names, ref_grads):
        assert bool(r.abs().sum() > 0) != (untrained and name.startswith("meta.head.")), name
    for key, value in net.state_dict().items():  # the model itself is untouched
        assert torch.equal(value, before[key]), key


def test_aggregate_adds_the_stage_gradients_to_the_maml_gradient():
    """"aggregate" = "maml" + (1/k) sum_j grad L^{S,j}(theta) on theta + grad_phi
    L^Q(theta', phi) on phi, each written out by hand with autograd (one speaker, float64)."""
    torch.manual_seed(6)
    net = MMTLNet(3, transfer_input="affect_logits", **SMALL).double()
    ep = _episode(1, 5, 24, 16, 3, torch.float64, seed=2)
    alpha = 0.1
    maml_loss, maml = outer_gradients(net, ep, alpha=alpha, beta=0.3, update="maml")
    loss, aggregate = outer_gradients(net, ep, alpha=alpha, beta=0.3, update="aggregate")
    meta = list(net.meta.parameters())
    aux = sum(F.cross_entropy(net.meta(ep["support"][0]), ep["support_affect"][0][:, j],
                              weight=ep["affect_weights"][0][j]) for j in range(3)) / 3
    g_aux = torch.autograd.grad(aux, meta)
    with torch.no_grad():
        theta1 = {n: p - alpha * g for (n, p), g in zip(net.meta.named_parameters(), g_aux)}
    z = functional_call(net.meta, theta1, (ep["query"][0],))
    transfer = F.cross_entropy(net.transfer(z), ep["query_labels"][0],
                               weight=ep["emotion_weights"][0])
    g_phi = torch.autograd.grad(transfer, list(net.transfer.parameters()))
    for a, m, extra in zip(aggregate, maml, list(g_aux) + list(g_phi)):
        torch.testing.assert_close(a, m + extra)
    torch.testing.assert_close(loss, maml_loss + aux.detach() + transfer.detach())


def test_outer_gradient_is_first_order_at_the_adapted_parameters():
    """"maml" for one speaker, written out by hand: theta' by one step on the auxiliary loss,
    phi' by one step on the emotion loss at theta', the gradient of the emotion loss at
    (theta', phi')."""
    torch.manual_seed(4)
    net = MMTLNet(3, **SMALL).double()
    ep = _episode(1, 5, 24, 16, 3, torch.float64, seed=1)
    alpha, beta = 0.1, 0.3
    theta = [p.detach().clone().requires_grad_() for p in net.meta.parameters()]
    names = [n for n, _ in net.meta.named_parameters()]
    logits = functional_call(net.meta, dict(zip(names, theta)), (ep["support"][0],))
    aux = sum(F.cross_entropy(logits, ep["support_affect"][0][:, j],
                              weight=ep["affect_weights"][0][j]) for j in range(3)) / 3
    theta1 = [t - alpha * g for t, g in zip(theta, torch.autograd.grad(aux, theta))]
    theta1 = [t.detach().requires_grad_() for t in theta1]
    encoder_params = {n[len("encoder."):]: t for n, t in zip(names, theta1)
                      if n.startswith("encoder.")}
    z = functional_call(net.meta.encoder, encoder_params, (ep["query"][0],))
    w, b = [p.detach().clone().requires_grad_() for p in net.transfer.parameters()]
    emo = F.cross_entropy(F.linear(z, w, b), ep["query_labels"][0], weight=ep["emotion_weights"][0])
    gw, gb = torch.autograd.grad(emo, [w, b], retain_graph=True)
    w1, b1 = (w - beta * gw).detach().requires_grad_(), (b - beta * gb).detach().requires_grad_()
    final = F.cross_entropy(F.linear(z, w1, b1), ep["query_labels"][0],
                            weight=ep["emotion_weights"][0])
    expected = torch.autograd.grad(final, theta1 + [w1, b1], allow_unused=True,
                                   materialize_grads=True)
    loss, grads = outer_gradients(net, ep, alpha=alpha, beta=beta, update="maml")
    torch.testing.assert_close(loss, final.detach())
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)


def test_selected_tasks_are_the_episode_restricted_to_them():
    """Table 3's task selection: the auxiliary loss averages over the selected tasks only."""
    from fastser.methods.mmtl.meta import auxiliary_loss, select_tasks

    torch.manual_seed(7)
    net = MMTLNet(4, **SMALL).double()
    ep = _episode(2, 4, 24, 16, 4, torch.float64, seed=3)
    va = select_tasks(ep, [0, 1])
    assert va["support_affect"].shape == (2, 4, 2) and va["affect_weights"].shape == (2, 2, 4)
    torch.testing.assert_close(va["support_affect"], ep["support_affect"][..., :2])
    logits = net.meta(ep["support"][0])
    torch.testing.assert_close(
        auxiliary_loss(logits, va["support_affect"][0], va["affect_weights"][0]),
        sum(F.cross_entropy(logits, ep["support_affect"][0][:, j],
                            weight=ep["affect_weights"][0][j]) for j in range(2)) / 2)
    batched = outer_gradients(net, va, alpha=0.05, beta=0.2)[1]
    sequential = outer_gradients_sequential(net, va, alpha=0.05, beta=0.2)[1]
    for b, r in zip(batched, sequential):
        torch.testing.assert_close(b, r)
    every = outer_gradients(net, ep, alpha=0.05, beta=0.2)[1]
    assert not all(torch.allclose(b, e) for b, e in zip(batched, every))


def test_episode_errors():
    net = MMTLNet(4, **SMALL)
    episode = _episode(2, 3, 24, 16, 4)
    with pytest.raises(ValueError, match=r"missing \['query_labels'\]"):
        outer_gradients(net, {k: v for k, v in episode.items() if k != "query_labels"})
    with pytest.raises(ValueError, match="emotion_weights has 4 speakers, support has 2"):
        outer_gradients(net, {**episode, "emotion_weights": torch.ones(4, 4)})
    with pytest.raises(ValueError, match="emotion_weights has 3 classes"):
        outer_gradients_sequential(net, {**episode, "emotion_weights": torch.ones(2, 3)})
    with pytest.raises(ValueError, match=r"update must be one of \('aggregate', 'maml'\)"):
        outer_gradients(net, episode, update="reptile")
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="speaker_chunk must be an integer >= 1 or None"):
            outer_gradients(net, episode, speaker_chunk=bad)
    assert set(EPISODE_KEYS) == set(episode)
