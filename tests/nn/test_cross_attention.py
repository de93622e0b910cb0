"""fastser.nn.CrossAttention: heads reshaping, fused vs reference path (and the deprecated
use_reference switch), learned queries."""

import pytest
import torch

from fastser.nn import CrossAttention
from fastser.ops import cross_attention


def _batch(batch=3, frames=9, embed=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, frames, embed, generator=gen),
            torch.randn(batch, frames, embed, generator=gen), torch.tensor([9, 1, 5])[:batch])


def test_outputs_are_the_op_on_heads_flattened_back():
    module = CrossAttention(num_heads=3, head_dim=4, scale=0.5)
    h_text, h_audio, lengths = _batch()
    outputs = module(h_text, h_audio, lengths)
    want = cross_attention(h_text.view(3, 9, 3, 4), h_audio.view(3, 9, 3, 4), module.q_text,
                           module.q_audio, lengths, scale=0.5)
    assert len(outputs) == 4
    for got, w in zip(outputs, want):
        assert got.shape == (3, 12)
        assert torch.equal(got, w.reshape(3, 12))


def test_reference_path_matches_the_fused_one_with_gradients():
    fused = CrossAttention(num_heads=2, head_dim=6)
    naive = CrossAttention(num_heads=2, head_dim=6, implementation="reference")
    naive.load_state_dict(fused.state_dict())
    h_text, h_audio, lengths = _batch()
    results = []
    for module in (fused, naive):
        inputs = [x.clone().requires_grad_() for x in (h_text, h_audio)]
        loss = sum((o * (i + 1)).sum() for i, o in enumerate(module(*inputs, lengths)))
        loss.backward()
        results.append([inputs[0].grad, inputs[1].grad, module.q_text.grad, module.q_audio.grad,
                        loss.detach()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_queries_are_learned_parameters():
    module = CrossAttention(num_heads=4, head_dim=8)
    names = dict(module.named_parameters())
    assert set(names) == {"q_text", "q_audio"}
    assert all(p.shape == (4, 8) for p in names.values())
    assert module.embed_dim == 32
    h_text, h_audio, _ = _batch(batch=2, embed=32)
    c_tt, c_ta, c_aa, c_at = module(h_text, h_audio)
    (c_tt.sum() + c_aa.sum()).backward()
    assert module.q_text.grad.abs().sum() > 0 and module.q_audio.grad.abs().sum() > 0


def test_wrong_embedding_size_is_rejected():
    module = CrossAttention(num_heads=3, head_dim=4)
    h_text, h_audio, lengths = _batch(embed=10)
    with pytest.raises(ValueError, match=r"h_text must be \(B, L, 12\)"):
        module(h_text, h_audio, lengths)
    h_text, h_audio, lengths = _batch()
    with pytest.raises(ValueError, match="h_audio must have the shape of h_text"):
        module(h_text, h_audio[:, :4], lengths)
    with pytest.raises(ValueError, match="num_heads and head_dim must be >= 1"):
        CrossAttention(num_heads=0, head_dim=4)


def test_both_paths_are_scriptable():
    h_text, h_audio, lengths = _batch()
    for implementation in ("fused", "reference"):
        module = CrossAttention(num_heads=3, head_dim=4, implementation=implementation)
        scripted = torch.jit.script(module)
        for got, want in zip(scripted(h_text, h_audio, lengths), module(h_text, h_audio, lengths)):
            torch.testing.assert_close(got, want)


def test_implementation_is_checked():
    assert CrossAttention(num_heads=1, head_dim=2).implementation == "fused"
    with pytest.raises(ValueError, match="implementation must be one of"):
        CrossAttention(num_heads=1, head_dim=2, implementation="naive")


@pytest.mark.parametrize("use_reference,implementation", [(True, "reference"),
                                                          (False, "fused")])
def test_use_reference_still_works_with_a_deprecation_warning(use_reference, implementation):
    with pytest.warns(DeprecationWarning, match='use_reference=.* is deprecated.*implementation='):
        module = CrossAttention(num_heads=3, head_dim=4, use_reference=use_reference)
    assert module.implementation == implementation
    same = CrossAttention(num_heads=3, head_dim=4, implementation=implementation)
    same.load_state_dict(module.state_dict())
    h_text, h_audio, lengths = _batch()
    for got, want in zip(module(h_text, h_audio, lengths), same(h_text, h_audio, lengths)):
        assert torch.equal(got, want)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="contradicts"):
        CrossAttention(num_heads=3, head_dim=4, use_reference=False, implementation="reference")
