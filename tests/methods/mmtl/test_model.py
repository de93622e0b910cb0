"""MMTL networks and meta-learning maths: Table 1 shapes, the vmap-able BiLSTM against
nn.LSTM, V/A/D discretisation, class weights, batched vs sequential outer gradients, test-time
adaptation, the scripted export module in a fresh process, bad inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

import optest
from fastser.models.mmtl import (BiLSTM, CNNLSTMEncoder, ConvBlock, MMTLNet, MultiTaskNet,
                                 SegmentPosteriorMean, SingleTaskNet, utterance_posteriors)
from fastser.models.mmtl_meta import (EPISODE_KEYS, adapt_meta, adapted_logits, class_weights,
                                      discretise_vad, outer_gradients,
                                      outer_gradients_sequential, split_params,
                                      weighted_cross_entropy)

SMALL = dict(frames=24, bins=16, conv=((3, 5, 4), (4, 3, 6)), lstm_hidden=8, embed_dim=6)


def _episode(m, n, frames, bins, classes, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "support": torch.randn(m, n, frames, bins, generator=gen, dtype=dtype),
        "support_vad": torch.randint(0, 4, (m, n, 3), generator=gen),
        "vad_weights": torch.rand(m, 3, 4, generator=gen, dtype=dtype) + 0.1,
        "query": torch.randn(m, n, frames, bins, generator=gen, dtype=dtype),
        "query_labels": torch.randint(0, classes, (m, n), generator=gen),
        "emotion_weights": torch.rand(m, classes, generator=gen, dtype=dtype) + 0.1,
    }


# -- Table 1 ---------------------------------------------------------------------------------
def test_table1_shapes():
    torch.manual_seed(0)
    net = MMTLNet(4)
    x = torch.randn(2, 300, 200)
    maps = x.unsqueeze(1)
    shapes = []
    for block in net.meta.encoder.convs:
        maps = block(maps)
        shapes.append(tuple(maps.shape))
    assert shapes == [(2, 16, 150, 100), (2, 24, 75, 50), (2, 32, 37, 25)]
    kernels = [tuple(b.conv.weight.shape) for b in net.meta.encoder.convs]
    assert kernels == [(16, 1, 12, 16), (24, 16, 8, 12), (32, 24, 5, 7)]
    lstm = net.meta.encoder.lstm
    assert (lstm.input_size, lstm.hidden_size) == (32 * 25, 128)
    assert tuple(net.meta.encoder.fc.weight.shape) == (64, 256)
    assert tuple(net.meta.head.weight.shape) == (4, 64)
    assert tuple(net.transfer.weight.shape) == (4, 64)
    z = net.meta.embed(x)
    assert z.shape == (2, 64) and bool((z >= 0).all())  # FC 64 + ReLU
    assert net.meta(x).shape == (2, 4)
    assert net(x).shape == (2, 4)


def test_baselines_shapes_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    x = torch.randn(5, 24, 16)
    mtl = MultiTaskNet(3, **SMALL)
    emotion, vad = mtl.heads(x)
    assert emotion.shape == (5, 3) and vad.shape == (5, 3, 4)
    torch.testing.assert_close(mtl(x), emotion)
    (emotion.sum() + vad.square().sum()).backward()
    stl = SingleTaskNet(3, **SMALL)
    stl(x).square().sum().backward()
    for net in (mtl, stl):
        for name, p in net.named_parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_encoder_rejects_wrong_segment_shapes():
    enc = CNNLSTMEncoder(**SMALL)
    with pytest.raises(ValueError, match=r"segments must be \(S, 24, 16\)"):
        enc(torch.randn(2, 24, 15))
    with pytest.raises(ValueError, match="too small"):
        CNNLSTMEncoder(frames=3, bins=200)
    with pytest.raises(ValueError, match="each conv layer"):
        CNNLSTMEncoder(conv=((3, 3),))


# -- the vmap-able LSTM ----------------------------------------------------------------------
def test_conv_block_equals_conv_relu_pool_in_table1_order_with_ties():
    """The block pools before its ReLU; values and gradients must equal Table 1's conv, ReLU,
    max pool, also where pooling windows tie (all-zero input rows give bias-only outputs)."""
    torch.manual_seed(2)
    block = ConvBlock(3, 5, (4, 3)).double()
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    x[:, :, :4] = 0.0  # constant region: tied windows, positive and negative bias channels
    x.requires_grad_(True)
    ref = F.max_pool2d(torch.relu(block.conv(F.pad(x, [1, 1, 1, 2]))), 2)  # 'same' for 4x3
    out = block(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), [x, *block.parameters()])
    ref_grads = torch.autograd.grad((ref * probe).sum(), [x, *block.parameters()])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_bilstm_equals_nn_lstm_outputs_and_gradients():
    torch.manual_seed(1)
    ours = BiLSTM(7, 5).double()
    ref = torch.nn.LSTM(7, 5, bidirectional=True, batch_first=True).double()
    ref.load_state_dict(ours.state_dict())  # same parameter names and shapes
    x = torch.randn(3, 11, 7, dtype=torch.float64, requires_grad=True)
    out, h = ours(x)
    ref_out, (ref_h, _) = ref(x)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, ref_h, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad((out.sin().sum() + h.sum()), [x, *ours.parameters()])
    ref_grads = torch.autograd.grad((ref_out.sin().sum() + ref_h.sum()), [x, *ref.parameters()])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_bilstm_under_vmap_over_stacked_parameters():
    torch.manual_seed(2)
    lstm = BiLSTM(4, 3)
    stacked = {k: torch.randn(5, *v.shape) * 0.5 for k, v in lstm.named_parameters()}
    x = torch.randn(5, 2, 6, 4)
    out, h = vmap(lambda p, xs: functional_call(lstm, p, (xs,)))(stacked, x)
    for i in range(5):
        ref = torch.nn.LSTM(4, 3, bidirectional=True, batch_first=True)
        ref.load_state_dict({k: v[i] for k, v in stacked.items()})
        ref_out, (ref_h, _) = ref(x[i])
        torch.testing.assert_close(out[i], ref_out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h[i], ref_h, rtol=1e-5, atol=1e-6)


# -- V/A/D classes and class weights ---------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (0.0, 0), (1.0, 0), (math.nextafter(2.0, 0.0), 0), (2.0, 1), (2.5, 1),
    (math.nextafter(3.0, 0.0), 1), (3.0, 2), (math.nextafter(4.0, 0.0), 2), (4.0, 3), (5.0, 3),
    (6.0, 3)])
def test_discretise_vad_edges(value, expected):
    assert discretise_vad([value, value, value], "u1") == [expected] * 3


@pytest.mark.parametrize("bad", [-0.001, 6.001, float("nan"), float("inf"), -float("inf")])
def test_discretise_vad_rejects_values_outside_the_scale(bad):
    with pytest.raises(ValueError, match=r"utterance 'Ses01F_007': arousal .* outside \[0, 6\]"):
        discretise_vad([3.0, bad, 3.0], "Ses01F_007")
    with pytest.raises(ValueError, match="expected 3 V/A/D values"):
        discretise_vad([3.0, 3.0], "Ses01F_007")


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
    aux = sum(F.cross_entropy(logits, ep["support_vad"][0][:, j], weight=ep["vad_weights"][0][j])
              for j in range(3)) / 3
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


# -- test-time adaptation ----------------------------------------------------------------------
def test_adaptation_changes_only_the_meta_learner():
    torch.manual_seed(5)
    net = MMTLNet(4, **SMALL)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    segments, vad = torch.randn(7, 24, 16), torch.randint(0, 4, (7, 3))
    theta = adapt_meta(net, segments, vad, lr=0.5, steps=2, chunk=3)
    assert set(theta) == {n for n, _ in net.meta.named_parameters()}
    moved = {k for k, v in theta.items() if not torch.equal(v, before[f"meta.{k}"])}
    assert moved == set(theta)  # every meta parameter moved (head included)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # net itself, transfer included, untouched
    # the chunked gradient is the full-batch gradient
    whole = adapt_meta(net, segments, vad, lr=0.5, steps=2, chunk=100)
    for k in theta:
        torch.testing.assert_close(theta[k], whole[k], rtol=1e-5, atol=1e-6)
    # adapted predictions use the adapted meta learner and the unchanged transfer learner
    encoder_params = {k[len("encoder."):]: v for k, v in theta.items() if k.startswith("encoder.")}
    expected = net.transfer(functional_call(net.meta.encoder, encoder_params, (segments,)))
    torch.testing.assert_close(adapted_logits(net, theta, segments), expected)
    # zero steps: the original parameters
    same = adapt_meta(net, segments, vad, steps=0)
    for k, v in split_params(net)[0].items():
        assert torch.equal(same[k], v)


def test_adaptation_errors():
    net = MMTLNet(4, **SMALL)
    with pytest.raises(ValueError, match="need n >= 1 segments"):
        adapt_meta(net, torch.randn(2, 24, 16), torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        adapt_meta(net, torch.randn(2, 24, 16), torch.zeros(2, 3, dtype=torch.int64), steps=-1)


# -- utterance posteriors and export -----------------------------------------------------------
def test_utterance_posteriors_are_segment_means_independent_of_batching():
    torch.manual_seed(6)
    net = SegmentPosteriorMean(MMTLNet(3, **SMALL)).eval()
    segments, counts = torch.randn(6, 24, 16), torch.tensor([1, 3, 2])
    probs = net(segments, counts)
    seg = net.net(segments).softmax(1)
    torch.testing.assert_close(probs[1], seg[1:4].mean(0))
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    alone = net(segments[4:6], torch.tensor([2]))
    torch.testing.assert_close(probs[2:], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(utterance_posteriors(seg, counts), probs)


def test_export_module_errors():
    net = SegmentPosteriorMean(SingleTaskNet(3, **SMALL))
    with pytest.raises(ValueError, match="counts sum to 3, but there are 4 segments"):
        net(torch.randn(4, 24, 16), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="at least one segment"):
        net(torch.randn(2, 24, 16), torch.tensor([2, 0]))
    with pytest.raises(ValueError, match="counts must be int64"):
        net(torch.randn(2, 24, 16), torch.tensor([2.0]))


def test_export_modules_scripted_and_reloaded_in_a_fresh_process(tmp_path):
    torch.manual_seed(7)
    inputs = (torch.randn(5, 24, 16), torch.tensor([2, 1, 2]))
    for make in (MultiTaskNet, SingleTaskNet):
        optest.script_roundtrip(SegmentPosteriorMean(make(4, **SMALL)), inputs,
                                tmp_path / f"{make.__name__}.pt", atol=1e-5, rtol=1e-5)
    module = SegmentPosteriorMean(MMTLNet(4, **SMALL)).eval()
    with torch.no_grad():
        expected = module(*inputs)
    optest.script_roundtrip(module, inputs, tmp_path / "mmtl.pt", atol=1e-5, rtol=1e-5)
    optest.check_scripted_in_fresh_process(tmp_path / "mmtl.pt", inputs, expected, tmp_path,
                                           atol=1e-5)


def test_bench_suite_quick_cases_compare_equal_computations():
    from fastser.bench import load_suite

    step, convs = load_suite("mmtl", torch.device("cpu"), torch.float64, quick=True)
    net, episode = step.make_inputs()
    results = [step.impls[name](net, episode) for name in step.impls]
    assert list(step.impls) == ["batched", "chunk=2", "naive"]
    for other in results[1:]:
        for b, n in zip(results[0], other):
            torch.testing.assert_close(b, n, rtol=1e-9, atol=1e-12)
    inputs = convs.make_inputs()
    grouped, per_speaker, shared = (convs.impls[name](*inputs) for name in convs.impls)
    speakers = per_speaker.shape[0]
    torch.testing.assert_close(grouped.unflatten(1, (speakers, -1)).transpose(0, 1), per_speaker)
    torch.testing.assert_close(shared.unflatten(0, per_speaker.shape[:2])[0], per_speaker[0])
