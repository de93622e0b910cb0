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
@pytest.mark.parametrize("dtype, tol, speaker_chunk", [(torch.float64, 1e-10, None),
                                                       (torch.float32, 1e-5, None),
                                                       (torch.float64, 1e-10, 2)])
def test_batched_and_sequential_outer_steps_give_the_same_updates(dtype, tol, speaker_chunk):
    torch.manual_seed(3)
    net = MMTLNet(5, **SMALL).to(dtype)
    episode = _episode(3, 4, 24, 16, 5, dtype)  # 3 speakers: chunks of 2 leave a ragged last one
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss, grads = outer_gradients(net, episode, alpha=0.05, beta=0.2, speaker_chunk=speaker_chunk)
    ref_loss, ref_grads = outer_gradients_sequential(net, episode, alpha=0.05, beta=0.2)
    torch.testing.assert_close(loss, ref_loss, rtol=tol, atol=tol)
    names = [n for n, _ in net.named_parameters()]
    for name, g, r in zip(names, grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol, msg=name)
        if not name.startswith("meta.head."):
            assert bool(r.abs().sum() > 0), name
    for key, value in net.state_dict().items():  # the model itself is untouched
        assert torch.equal(value, before[key]), key


def test_outer_gradient_is_first_order_at_the_adapted_parameters():
    """One speaker, written out by hand: theta' by one step on the auxiliary loss, phi' by one
    step on the emotion loss at theta', the gradient of the emotion loss at (theta', phi')."""
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
    loss, grads = outer_gradients(net, ep, alpha=alpha, beta=beta)
    torch.testing.assert_close(loss, final.detach())
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)


def test_episode_errors():
    net = MMTLNet(4, **SMALL)
    episode = _episode(2, 3, 24, 16, 4)
    with pytest.raises(ValueError, match=r"missing \['query_labels'\]"):
        outer_gradients(net, {k: v for k, v in episode.items() if k != "query_labels"})
    with pytest.raises(ValueError, match="emotion_weights has 4 speakers, support has 2"):
        outer_gradients(net, {**episode, "emotion_weights": torch.ones(4, 4)})
    with pytest.raises(ValueError, match="emotion_weights has 3 classes"):
        outer_gradients_sequential(net, {**episode, "emotion_weights": torch.ones(2, 3)})
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="speaker_chunk must be an integer >= 1 or None"):
            outer_gradients(net, episode, speaker_chunk=bad)
    assert set(EPISODE_KEYS) == set(episode)
