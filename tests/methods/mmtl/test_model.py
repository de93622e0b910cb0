"""MMTL networks: Table 1 shapes, the baselines' networks, the vmap-able BiLSTM against
nn.LSTM, the conv block, the scripted export module in a fresh process, bad inputs, and the
bench suite's equal computations."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

import optest
from fastser.methods.mmtl.baselines import MultiTaskNet, SingleTaskNet
from fastser.methods.mmtl.model import (BiLSTM, CNNLSTMEncoder, ConvBlock, MMTLNet,
                                        SegmentPosteriorMean, utterance_posteriors)

SMALL = dict(frames=24, bins=16, conv=((3, 5, 4), (4, 3, 6)), lstm_hidden=8, embed_dim=6)


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
    emotion, affect = mtl.heads(x)
    assert emotion.shape == (5, 3) and affect.shape == (5, 3, 4)
    torch.testing.assert_close(mtl(x), emotion)
    (emotion.sum() + affect.square().sum()).backward()
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
    assert list(step.impls) == ["batched", "chunk=2", "reference"]
    for other in results[1:]:
        for b, n in zip(results[0], other):
            torch.testing.assert_close(b, n, rtol=1e-9, atol=1e-12)
    inputs = convs.make_inputs()
    grouped, per_speaker, shared = (convs.impls[name](*inputs) for name in convs.impls)
    speakers = per_speaker.shape[0]
    torch.testing.assert_close(grouped.unflatten(1, (speakers, -1)).transpose(0, 1), per_speaker)
    torch.testing.assert_close(shared.unflatten(0, per_speaker.shape[:2])[0], per_speaker[0])
