"""SAP head: GAP/SAP against a float64 per-utterance computation and the reference loop,
speech and padding masking, the no-speech fallback, gradients, TorchScript, bad input."""

from __future__ import annotations

import pytest
import torch

import optest
from fastser.audio.ssl import WeightedLayerSum
from fastser.methods.sap.model import SAPClassifier, SAPHead, SAPModel, speech_frames

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def make_batch(batch=6, frames=40, dim=16, seed=0, layers=None):
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, frames, dim) if layers is None else (batch, frames, layers, dim)
    features = torch.randn(*shape, generator=gen)
    lengths = optest.ragged_lengths(batch, frames, edges=(1, 2), generator=gen)
    speech = torch.rand(batch, frames, generator=gen) < 0.6
    speech[0, 0] = True  # the one-frame utterance is speech
    speech[1] = False  # no speech at all: falls back to every valid frame
    speech[2, :int(lengths[2])] = True  # speech everywhere
    valid = torch.arange(frames) < lengths[:, None]
    zeros = features.new_zeros(())
    features = torch.where(valid.view(valid.shape + (1,) * (features.dim() - 2)), features, zeros)
    return features, lengths, speech


def head(dim=16, seed=0, **options):
    torch.manual_seed(seed)
    return SAPHead(dim, 4, heads=4, **options).eval()


def reference_pool(model: SAPHead, features, lengths, speech):
    """GAP and SAP per utterance in float64, attention written out from the module's
    weights: softmax(Q Kᵀ / sqrt(d)) V per head over the speech frames only."""
    attention = model.attention
    dim, heads = attention.embed_dim, attention.num_heads
    w_in = attention.in_proj_weight.double()
    b_in = attention.in_proj_bias.double()
    w_out, b_out = attention.out_proj.weight.double(), attention.out_proj.bias.double()
    gaps, saps = [], []
    for x, n, s in zip(features.double(), lengths.tolist(), speech):
        x, s = x[:n], s[:n]
        frames = x[s] if bool(s.any()) else x
        q, k, v = (frames @ w_in.T + b_in).split(dim, dim=1)
        split = lambda t: t.view(-1, heads, dim // heads).transpose(0, 1)  # noqa: E731
        scores = split(q) @ split(k).transpose(1, 2) / (dim // heads) ** 0.5
        mixed = (scores.softmax(dim=-1) @ split(v)).transpose(0, 1).reshape(-1, dim)
        gaps.append(x.mean(dim=0))
        saps.append((mixed @ w_out.T + b_out).mean(dim=0))
    return torch.stack(gaps), torch.stack(saps)


def test_gap_and_sap_values():
    model = head()
    features, lengths, speech = make_batch()
    want_gap, want_sap = reference_pool(model, features, lengths, speech)
    with torch.no_grad():
        for pool in (model.pool, model.pool_masked, model.pool_loop):
            gap, sap, fallback = pool(features, lengths, speech)
            torch.testing.assert_close(gap.double(), want_gap, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(sap.double(), want_sap, atol=1e-5, rtol=1e-5)
            assert fallback.tolist() == [False, True, False, False, False, False]


@pytest.mark.parametrize("pooling", ["gap", "sap"])
def test_pooling_ablations_read_gap_or_sap_alone(pooling):
    """Table 1's GAP and SAP rows: the projection reads that pooling alone (D features)."""
    both = head()
    one = head(pooling=pooling)
    state = both.state_dict()
    state["projection.0.weight"] = state["projection.0.weight"][:, :16] if pooling == "gap" \
        else state["projection.0.weight"][:, 16:]
    one.load_state_dict(state)
    features, lengths, speech = make_batch()
    with torch.no_grad():
        gap, sap, fallback = both.pool(features, lengths, speech)
        hidden = one.projection((gap if pooling == "gap" else sap))
        out = one(features, lengths, speech)
        torch.testing.assert_close(out.logits, one.classifier(hidden))
        assert out.fallback.tolist() == fallback.tolist()
    with pytest.raises(ValueError, match="pooling must be one of"):
        head(pooling="max")


@pytest.mark.parametrize("sr_norm", [False, True])
def test_fused_equals_reference_forward_and_backward(sr_norm):
    fused = head(sr_norm=sr_norm).train()
    naive = head(implementation="reference", sr_norm=sr_norm).train()
    fused.projection[2].p = naive.projection[2].p = 0.0  # no dropout: comparable in training
    naive.load_state_dict(fused.state_dict())
    features, lengths, speech = make_batch(frames=33, seed=1)
    outs, grads = [], []
    for model in (fused, naive):
        x = features.clone().requires_grad_()
        out = model(x, lengths, speech)
        (out.logits.square().sum() + out.regression.sum()).backward()
        outs.append(out)
        grads.append([x.grad] + [p.grad for p in model.parameters()])
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads[0])


def test_non_speech_and_padding_change_nothing():
    model = head()
    features, lengths, speech = make_batch()
    with torch.no_grad():
        gap, sap, _ = model.pool(features, lengths, speech)
        valid, pooled, _ = speech_frames(lengths, speech)
        changed = features.clone()
        changed[~valid] = float("nan")  # padding, even NaN, is ignored
        changed[valid & ~pooled] += 5.0  # non-speech frames reach GAP only
        gap2, sap2, _ = model.pool(changed, lengths, speech)
        speech_past_end = speech | ~valid  # flags past the length are ignored too
        gap3, sap3, _ = model.pool(features, lengths, speech_past_end)
    torch.testing.assert_close(sap2, sap, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sap3, sap)
    torch.testing.assert_close(gap3, gap)
    assert torch.isfinite(gap2).all()
    moved = (valid & ~pooled).any(dim=1)
    assert bool(moved.any()) and not torch.allclose(gap2[moved], gap[moved])
    assert torch.equal(gap2[~moved], gap[~moved])


def test_fallback_pools_every_valid_frame():
    model = head()
    features, lengths, speech = make_batch()
    no_speech = torch.zeros_like(speech)
    all_valid = torch.arange(speech.shape[1]) < lengths[:, None]
    with torch.no_grad():
        out = model(features, lengths, no_speech)
        want = model(features, lengths, all_valid)
    assert out.fallback.all() and not want.fallback.any()
    torch.testing.assert_close(out.logits, want.logits)


def test_shapes_and_dropped_regressors():
    features, lengths, speech = make_batch()
    out = head()(features, lengths, speech)
    assert out.logits.shape == (6, 4) and out.regression.shape == (6, 2)
    assert out.fallback.dtype == torch.bool
    out = head(affect_dims=0)(features, lengths, speech)
    assert out.regression.shape == (6, 0)


def test_model_combines_layers():
    torch.manual_seed(0)
    combine = WeightedLayerSum(3)
    with torch.no_grad():
        combine.logits.copy_(torch.tensor([1.0, 0.0, -1.0]))
    model = SAPModel(head(), combine=combine).eval()
    layers, lengths, speech = make_batch(layers=3)
    with torch.no_grad():
        out = model(layers, lengths, speech)
        want = model.head(combine(layers), lengths, speech)
        probs = model.classifier()(layers, lengths, speech)
    torch.testing.assert_close(out.logits, want.logits)
    torch.testing.assert_close(probs, want.logits.softmax(dim=1))
    with pytest.raises(ValueError, match="pass no combine"):
        SAPModel(head(), combine=combine, front_end=torch.nn.Identity())
    with pytest.raises(ValueError, match="fine-tuned SSL front end cannot be exported"):
        SAPModel(head(), front_end=torch.nn.Identity()).classifier()


def test_sr_norm_standardises_over_the_batch():
    model = head(sr_norm=True).train()
    features, lengths, speech = make_batch()
    gap, sap, _ = model.pool(features, lengths, speech)
    sr = model.standardise(torch.cat([gap, sap], 1))
    torch.testing.assert_close(sr.mean(dim=0), torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(sr.var(dim=0, unbiased=False), torch.ones(32), atol=1e-3,
                               rtol=1e-3)
    assert model.sr_norm.running_mean.abs().sum() > 0
    one = model.standardise(torch.cat([gap[:1], sap[:1]], 1))  # a batch of one: running stats
    stats = model.sr_norm
    want = (torch.cat([gap[:1], sap[:1]], 1) - stats.running_mean) / (stats.running_var + 1e-5).sqrt()
    torch.testing.assert_close(one, want)
    model.eval()
    torch.testing.assert_close(model.standardise(torch.cat([gap, sap], 1))[:1], want)


@pytest.mark.parametrize("implementation,sr_norm", [("fused", True), ("reference", False)])
def test_scripted_classifier_in_fresh_process(tmp_path, implementation, sr_norm):
    torch.manual_seed(0)
    module = SAPClassifier(WeightedLayerSum(3),
                           head(implementation=implementation, sr_norm=sr_norm)).eval()
    inputs = make_batch(layers=3)
    loaded = optest.script_roundtrip(module, inputs, tmp_path / "sap.pt", atol=1e-5, rtol=1e-5)
    other = make_batch(batch=3, frames=25, seed=4, layers=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*other), module(*other), atol=1e-5, rtol=1e-5)
        expected = module(*inputs)
    optest.check_scripted_in_fresh_process(tmp_path / "sap.pt", inputs, expected, tmp_path,
                                           atol=1e-5)


@pytest.mark.parametrize("mutate,pattern", [
    (lambda f, n, s: (f[0], n, s), r"features must be float \(B, F, D\)"),
    (lambda f, n, s: (f.long(), n, s), r"features must be float"),
    (lambda f, n, s: (f, n.int(), s), r"lengths must be int64 \(6,\)"),
    (lambda f, n, s: (f, n[:3], s), r"lengths must be int64 \(6,\)"),
    (lambda f, n, s: (f, n, s.float()), r"speech must be bool \(6, 40\)"),
    (lambda f, n, s: (f, n, s[:, :10]), r"speech must be bool \(6, 40\)"),
    (lambda f, n, s: (f, n * 0, s), r"lengths must be in \[1, 40\], got values from 0"),
    (lambda f, n, s: (f, n + 40, s), r"lengths must be in \[1, 40\]"),
    (lambda f, n, s: (f[:0], n[:0], s[:0]), "empty batch"),
])
def test_bad_input(mutate, pattern):
    features, lengths, speech = make_batch()
    with pytest.raises(ValueError, match=pattern):
        head()(*mutate(features, lengths, speech))


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match=r"heads \(3\) must divide input_dim \(16\)"):
        SAPHead(16, 4, heads=3)


def test_implementation_must_be_fused_or_reference():
    assert head().implementation == "fused"
    assert head(implementation="reference").implementation == "reference"
    with pytest.raises(ValueError, match="implementation must be one of"):
        SAPHead(16, 4, heads=4, implementation="naive")


@pytest.mark.filterwarnings("ignore:fastser.train.recipes has moved:DeprecationWarning")
def test_old_import_paths_still_work_with_a_warning():
    import importlib
    import sys

    from fastser.methods.sap import model, recipe

    for old, new in (("fastser.models.sap", model), ("fastser.train.recipes.sap", recipe)):
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new.__name__}"):
            assert importlib.import_module(old) is new
