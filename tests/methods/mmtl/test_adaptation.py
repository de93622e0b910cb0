"""Test-time adaptation of MMTL's meta learner: only the meta learner moves, the chunked
gradient is the full-batch one (plain steps and Adam), Adam steps as torch's Adam takes them,
adapted logits use the unchanged transfer learner, per-speaker logits of SpeakerAdaptedNet,
bad inputs. (Adaptation inside evaluation is tested with the recipe.)"""

import pytest
import torch
from torch.func import functional_call

from fastser.methods.mmtl.adaptation import SpeakerAdaptedNet, adapt_meta, adapted_logits
from fastser.methods.mmtl.meta import auxiliary_loss, class_weights, split_params
from fastser.methods.mmtl.model import MMTLNet

SMALL = dict(frames=24, bins=16, conv=((3, 5, 4), (4, 3, 6)), lstm_hidden=8, embed_dim=6)


# -- test-time adaptation ----------------------------------------------------------------------
def test_adaptation_changes_only_the_meta_learner():
    torch.manual_seed(5)
    net = MMTLNet(4, **SMALL)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    segments, affect = torch.randn(7, 24, 16), torch.randint(0, 4, (7, 3))
    theta = adapt_meta(net, segments, affect, lr=0.5, steps=2, chunk=3)
    assert set(theta) == {n for n, _ in net.meta.named_parameters()}
    moved = {k for k, v in theta.items() if not torch.equal(v, before[f"meta.{k}"])}
    assert moved == set(theta)  # every meta parameter moved (head included)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # net itself, transfer included, untouched
    # the chunked gradient is the full-batch gradient
    whole = adapt_meta(net, segments, affect, lr=0.5, steps=2, chunk=100)
    for k in theta:
        torch.testing.assert_close(theta[k], whole[k], rtol=1e-5, atol=1e-6)
    # adapted predictions use the adapted meta learner and the unchanged transfer learner
    encoder_params = {k[len("encoder."):]: v for k, v in theta.items() if k.startswith("encoder.")}
    expected = net.transfer(functional_call(net.meta.encoder, encoder_params, (segments,)))
    torch.testing.assert_close(adapted_logits(net, theta, segments), expected)
    # zero steps: the original parameters
    same = adapt_meta(net, segments, affect, steps=0)
    for k, v in split_params(net)[0].items():
        assert torch.equal(same[k], v)


@pytest.mark.parametrize("transfer_input", ["affect_logits", "representation"])
def test_adam_adaptation_is_torch_adam_on_the_full_batch_auxiliary_loss(transfer_input):
    torch.manual_seed(6)
    net = MMTLNet(3, transfer_input=transfer_input, **SMALL).double()
    segments, affect = torch.randn(9, 24, 16, dtype=torch.float64), torch.randint(0, 4, (9, 3))
    theta = adapt_meta(net, segments, affect, lr=0.01, steps=3, chunk=4, optimizer="adam")
    expected = MMTLNet(3, transfer_input=transfer_input, **SMALL).double()
    expected.load_state_dict(net.state_dict())
    weights = torch.stack([class_weights(affect[:, j], 4) for j in range(3)]).double()
    adam = torch.optim.Adam(expected.meta.parameters(), lr=0.01)
    for _ in range(3):
        adam.zero_grad()
        auxiliary_loss(expected.meta(segments), affect, weights).backward()
        adam.step()
    for name, value in expected.meta.named_parameters():
        torch.testing.assert_close(theta[name], value.detach(), msg=name)


def test_speaker_adapted_net_scores_each_segment_with_its_speakers_parameters():
    torch.manual_seed(7)
    net = MMTLNet(4, **SMALL)
    segments = torch.randn(6, 24, 16)
    owners = ["a", "b", "a", "c", "b", "a"]  # "c" was not adapted
    adapted = {s: adapt_meta(net, segments[:3], torch.randint(0, 4, (3, 3)), lr=0.5, steps=1)
               for s in ("a", "b")}
    logits = SpeakerAdaptedNet(net, adapted).speaker_logits(segments, owners)
    for row, owner in enumerate(owners):
        expected = (net(segments[row:row + 1]) if owner == "c"
                    else adapted_logits(net, adapted[owner], segments[row:row + 1]))
        torch.testing.assert_close(logits[row:row + 1], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(SpeakerAdaptedNet(net, adapted)(segments), net(segments))


def test_adaptation_errors():
    net = MMTLNet(4, **SMALL)
    with pytest.raises(ValueError, match="need n >= 1 segments"):
        adapt_meta(net, torch.randn(2, 24, 16), torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        adapt_meta(net, torch.randn(2, 24, 16), torch.zeros(2, 3, dtype=torch.int64), steps=-1)
    with pytest.raises(ValueError, match=r"optimizer must be one of \('sgd', 'adam'\)"):
        adapt_meta(net, torch.randn(2, 24, 16), torch.zeros(2, 3, dtype=torch.int64),
                   optimizer="rmsprop")
