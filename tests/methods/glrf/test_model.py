"""GLRF: GLRA blocks (branches, SK fusion, halving), the segment scorer, utterance scores,
TorchScript."""

import pytest
import torch

import optest
from fastser.methods.glrf.model import (GLRF, GLRABlock, GLRFInference, LocalBranch, SKFusion,
                                 utterance_scores)

SMALL = dict(n_mfcc=12, channels=16, blocks=2, heads=4, dropout=0.0)


def _model(**kw):
    torch.manual_seed(0)
    return GLRF(3, **{**SMALL, **kw})


@pytest.mark.parametrize("frames", [198, 99, 7, 2])
def test_glra_block_keeps_channels_and_halves_time(frames):
    block = GLRABlock(16, 4).eval()
    out = block(torch.randn(3, 16, frames))
    assert out.shape == (3, 16, frames // 2)


def test_stacked_blocks_halve_time_each():
    model = _model(blocks=3).eval()
    x = model.stem(torch.randn(2, 12, 198))
    sizes = []
    for block in model.blocks:
        x = block(x)
        sizes.append(x.shape[2])
    assert sizes == [99, 49, 24]


def test_sk_fusion_weights_sum_to_one_and_mix_the_branches():
    torch.manual_seed(1)
    fusion = SKFusion(16, reduction=4)
    g, l = torch.randn(5, 16, 9), torch.randn(5, 16, 9)
    w = fusion.weights(g, l)
    assert w.shape == (5, 2, 16)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(5, 16))
    assert bool((w > 0).all())
    torch.testing.assert_close(fusion(g, l), w[:, 0, :, None] * g + w[:, 1, :, None] * l)
    # the weights depend on the input (an attention, not a constant mix)
    assert not torch.allclose(w, fusion.weights(g * 3, l))


def test_local_branch_sees_only_nearby_frames():
    branch = LocalBranch(8, kernel=3).eval()
    x = torch.randn(1, 8, 20)
    y = x.clone()
    y[0, :, 10] += 1.0
    changed = (branch(x) - branch(y)).abs().amax(dim=1)[0] > 0
    # two width-3 convolutions: frames 8..12 change, the others do not
    assert changed.nonzero().flatten().tolist() == [8, 9, 10, 11, 12]


def test_glrf_gives_one_logit_per_class_per_segment_and_gradients_reach_every_weight():
    model = _model().train()
    logits = model(torch.randn(6, 40, 12))
    assert logits.shape == (6, 3)
    logits.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_features_are_standardised_with_the_buffers():
    model = _model().eval()
    x = torch.randn(4, 32, 12)
    mean, std = torch.randn(12), torch.rand(12) + 0.5
    reference = model(x)
    model.feature_mean.copy_(mean)
    model.feature_std.copy_(std)
    torch.testing.assert_close(model(x * std + mean), reference, atol=1e-5, rtol=1e-5)


def test_eval_scores_do_not_depend_on_the_other_segments_of_the_batch():
    model = _model().eval()
    x = torch.randn(5, 40, 12)
    alone = torch.cat([model(x[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(model(x), alone, atol=1e-6, rtol=1e-5)


def test_bad_inputs_and_settings_are_rejected():
    model = _model()
    with pytest.raises(ValueError, match="n_mfcc = 12"):
        model(torch.randn(2, 40, 13))
    with pytest.raises(ValueError, match="at least 4 frames"):
        model(torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match="multiple of heads"):
        GLRF(3, channels=10, heads=4)
    with pytest.raises(ValueError, match="odd"):
        GLRF(3, local_kernel=4)


def test_utterance_scores_are_the_mean_of_each_utterance_segments():
    scores = torch.rand(7, 3)
    counts = torch.tensor([1, 4, 2])
    want = torch.stack([part.mean(0) for part in scores.split([1, 4, 2])])
    torch.testing.assert_close(utterance_scores(scores, counts), want)
    with pytest.raises(ValueError, match="sum to 6 but there are 7"):
        utterance_scores(scores, torch.tensor([1, 3, 2]))
    with pytest.raises(ValueError, match="at least one segment"):
        utterance_scores(scores, torch.tensor([0, 5, 2]))
    with pytest.raises(ValueError, match="int64"):
        utterance_scores(scores, counts.int())


def test_inference_module_scripts_and_runs_in_a_fresh_process(tmp_path):
    module = GLRFInference(_model()).eval()
    inputs = (torch.randn(5, 40, 12), torch.tensor([2, 3]))
    with torch.no_grad():
        expected = module(*inputs)
    torch.testing.assert_close(expected, torch.stack([
        torch.sigmoid(module.model(inputs[0][:2])).mean(0),
        torch.sigmoid(module.model(inputs[0][2:])).mean(0)]), atol=1e-6, rtol=1e-6)
    loaded = optest.script_roundtrip(module, inputs, tmp_path / "glrf.pt")
    torch.testing.assert_close(loaded.segment_probs(inputs[0]),
                               torch.sigmoid(module.model(inputs[0])).detach())
    optest.check_scripted_in_fresh_process(tmp_path / "glrf.pt", inputs, expected, tmp_path)


# -- the paper's scorer and Table 4's ablations ------------------------------------------------
def test_linear_scorer_is_one_fc_layer_over_the_time_average():
    mlp, linear = _model().eval(), _model(scorer="linear").eval()
    assert [type(m).__name__ for m in linear.scorer] == ["Dropout", "Linear"]
    features = torch.randn(4, 24, 12)
    with torch.no_grad():
        x = linear.stem(((features - linear.feature_mean) / linear.feature_std).transpose(1, 2))
        for block in linear.blocks:
            x = block(x)
        torch.testing.assert_close(linear(features), linear.scorer[1](x.mean(dim=2)))
    # nothing else changes: every other weight has the same name and shape
    others = lambda m: {k: v.shape for k, v in m.state_dict().items()  # noqa: E731
                        if not k.startswith("scorer.")}
    assert others(linear) == others(mlp)


def test_sum_fusion_adds_the_branches():
    torch.manual_seed(2)
    block = GLRABlock(16, 4, fusion="sum").eval()
    assert not list(block.fusion.parameters())
    x = torch.randn(3, 16, 10)
    with torch.no_grad():
        fused = block.global_branch(x) + block.local_branch(x)
        torch.testing.assert_close(block(x), torch.nn.functional.max_pool1d(fused, 2, 2))
    sk = GLRABlock(16, 4)
    same = {k for k in sk.state_dict() if not k.startswith("fusion.")}
    assert same == set(block.state_dict())


def test_convolution_branches_replace_attention_and_the_local_branch():
    from fastser.methods.glrf.model import ConvBranch

    torch.manual_seed(3)
    block = GLRABlock(16, 4, branches="convolutions").eval()
    assert isinstance(block.global_branch, ConvBranch) and isinstance(block.local_branch,
                                                                       ConvBranch)
    assert [b.body[0].kernel_size for b in (block.global_branch, block.local_branch)] == [(3,),
                                                                                          (5,)]
    x = torch.randn(2, 16, 12)
    with torch.no_grad():
        branch = block.global_branch
        torch.testing.assert_close(branch(x), x + branch.body(x))
        g, l = block.global_branch(x), block.local_branch(x)
        torch.testing.assert_close(block(x), torch.nn.functional.max_pool1d(block.fusion(g, l),
                                                                            2, 2))
    assert set(GLRABlock(16, 4).fusion.state_dict()) == set(block.fusion.state_dict())
    with pytest.raises(ValueError, match="fusion must be one of"):
        GLRABlock(16, 4, fusion="concat")
    with pytest.raises(ValueError, match="scorer must be one of"):
        _model(scorer="deep")
