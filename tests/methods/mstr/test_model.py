"""MSTR and its vanilla-Transformer baseline: shapes, padding invariance, fused == reference
(outputs and gradients), FLOP accounting against the paper's claim, TorchScript, bad input."""

import pytest
import torch

from fastser.methods.mstr.model import MSTR, attention_flops
from fastser.methods.mstr.transformer import VanillaTransformer
from fastser.ops.fractal_attention import fractal_attention_flops
from optest import check_scripted_in_fresh_process, script_roundtrip

SMALL = {"embed_dim": 32, "num_heads": 4, "num_blocks": 2, "ffn_dim": 48}
INPUT_DIM, CLASSES = 12, 4


def make(kind: str, **kwargs):
    """A small model with fixed weights: "mstr", "mstr-reference", "transformer",
    "transformer-reference" (every pair shares its weights)."""
    torch.manual_seed(0)
    implementation = "reference" if kind.endswith("reference") else "fused"
    if kind.startswith("mstr"):
        model = MSTR(INPUT_DIM, CLASSES, implementation=implementation, **SMALL, **kwargs)
    else:
        model = VanillaTransformer(INPUT_DIM, CLASSES, implementation=implementation, **SMALL,
                                   **kwargs)
    return model.eval()


KINDS = ["mstr", "mstr-reference", "transformer", "transformer-reference"]


def ragged_batch(lengths, frames=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    frames = frames or max(lengths)
    return torch.randn(len(lengths), frames, INPUT_DIM, generator=gen), torch.tensor(lengths)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes(kind):
    model = make(kind)
    features, lengths = ragged_batch([90, 1, 40])
    assert model(features, lengths).shape == (3, CLASSES)
    assert model.embed(features, lengths).shape == (3, SMALL["embed_dim"])
    assert model(features).shape == (3, CLASSES)  # lengths None: every frame is valid


def test_paper_defaults():
    model = MSTR()
    assert (model.input_dim, model.embed_dim, model.num_classes) == (1024, 1024, 4)
    assert len(model.blocks) == 4 and (model.p, model.levels) == (3, 4)
    attention = model.blocks[0].attention
    assert (attention.num_heads, attention.head_dim, attention.p, attention.levels) == (16, 64, 3, 4)
    linears = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 512), (512, 256), (256, 4)]
    baseline = VanillaTransformer()
    assert ([p.shape for p in baseline.parameters()] == [p.shape for p in model.parameters()])


@pytest.mark.parametrize("kind", KINDS)
def test_padding_changes_nothing(kind):
    """Each utterance alone (unpadded) gives what it gives inside a padded batch, whatever the
    padding holds (zeros, noise, huge values, NaN)."""
    model = make(kind)
    lengths = [100, 1, 37, 82]
    features, lengths_t = ragged_batch(lengths, frames=110)
    alone = torch.cat([model(features[b:b + 1, :n]) for b, n in enumerate(lengths)])
    valid = torch.arange(110)[None, :, None] < lengths_t[:, None, None]
    for fill in (0.0, 1e4, float("nan")):
        noisy = torch.where(valid, features, torch.randn_like(features) + fill)
        with torch.no_grad():
            batched = model(noisy, lengths_t)
        torch.testing.assert_close(batched, alone, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("model_name", ["mstr", "transformer"])
def test_fused_matches_reference_outputs_and_gradients(model_name):
    features, lengths = ragged_batch([120, 81, 82, 5, 1], seed=1)
    results = []
    for kind in (model_name, f"{model_name}-reference"):
        model = make(kind)
        x = features.clone().requires_grad_()
        out = model(x, lengths)
        (out * torch.linspace(-1, 1, CLASSES)).sum().backward()
        results.append((out, x.grad, {n: p.grad for n, p in model.named_parameters()}))
    (out, dx, grads), (ref_out, ref_dx, ref_grads) = results
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx, ref_dx, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-4, rtol=1e-4, msg=name)
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "attention.qkv.weight" in n)


def test_mstr_attention_flops_are_below_five_percent_of_vanilla():
    """The paper's claim in kind, at its sizes: T=326 SSL frames, 4 blocks, 1024-d, 16 heads.
    Counted by FlopCounterMode (on meta tensors); the linear layers are counted apart."""
    B, T, H, D, blocks = 2, 326, 16, 64, 4
    features, lengths = torch.empty(B, T, 1024, device="meta"), torch.tensor([T, 200])
    counts = {}
    for name, make_model in (("mstr", MSTR), ("vanilla", VanillaTransformer)):
        with torch.device("meta"):
            model = make_model()
        counts[name] = {backward: attention_flops(model, features, lengths, backward=backward)
                        for backward in (False, True)}
    forward_m, forward_v = counts["mstr"][False], counts["vanilla"][False]
    # what is counted: the fused op's formula, and QK^T + AV over all T x T pairs per head
    assert set(forward_m["by_op"]) == {"aten.addmm", "fastser.fractal_attention"}
    assert forward_m["attention"] == blocks * fractal_attention_flops((B, T, H, D), 3, 4)
    assert forward_v["attention"] == blocks * B * H * 2 * (2 * T * T * D)
    # identical projections, feed-forward networks and classifiers
    assert forward_m["linear"] == forward_v["linear"] > 0
    for backward in (False, True):
        ratio = counts["mstr"][backward]["attention"] / counts["vanilla"][backward]["attention"]
        assert 0 < ratio < 0.05, (backward, ratio)


@pytest.mark.parametrize("kind", KINDS)
def test_flop_counts_do_not_depend_on_the_device_or_the_attention_path(kind):
    """A model on the CPU is counted on a meta copy (PyTorch's CPU SDPA kernel has no FLOP
    formula, so full attention would count 0 there).  The reference paths count the same linear
    layers; full attention counts the same either way, while the reference fractal op counts
    as its batched matmuls (windows padded to p frames, pooling uncounted)."""
    features, lengths = ragged_batch([50, 20])
    counts = attention_flops(make(kind), features, lengths, backward=True)
    fused = attention_flops(make(kind.split("-")[0]), features, lengths, backward=True)
    assert counts["linear"] == fused["linear"] and counts["attention"] > 0
    if kind.startswith("transformer"):
        assert counts["attention"] == fused["attention"]


def test_torchscript_mstr_in_a_fresh_process(tmp_path):
    model = make("mstr")
    inputs = list(ragged_batch([50, 9, 31]))
    path = tmp_path / "mstr.pt"
    loaded = script_roundtrip(model, inputs, path, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        expected = loaded(*inputs)
    check_scripted_in_fresh_process(path, inputs, expected, tmp_path, atol=1e-5)


@pytest.mark.parametrize("kind", ["mstr-reference", "transformer", "transformer-reference"])
def test_torchscript_reference_and_baseline(tmp_path, kind):
    script_roundtrip(make(kind), list(ragged_batch([50, 9, 31])), tmp_path / "model.pt",
                     atol=1e-5, rtol=1e-5)


BAD_INPUTS = [
    (lambda x, n: (x[..., :5], n), "5 channels per frame, the model expects input_dim=12"),
    (lambda x, n: (x[0], n), r"features must be \(B, T, input_dim\)"),
    (lambda x, n: (x.long(), n), "features must be a float tensor"),
    (lambda x, n: (x[:, :0], n), "no frames"),
    (lambda x, n: (x, n[:2]), r"lengths must be \(3,\)"),
    (lambda x, n: (x, n.int()), "lengths must be int64"),
    (lambda x, n: (x, torch.tensor([20, 0, 3])), r"lengths must lie in \[1, T=20\].*from 0"),
    (lambda x, n: (x, torch.tensor([21, 1, 3])), r"lengths must lie in \[1, T=20\].*to 21"),
]


@pytest.mark.parametrize("kind", ["mstr", "transformer"])
@pytest.mark.parametrize("bad,message", BAD_INPUTS)
def test_bad_inputs_are_clear_errors(kind, bad, message):
    model = make(kind)
    features, lengths = bad(*ragged_batch([20, 5, 3]))
    with pytest.raises(ValueError, match=message):
        model(features, lengths)


def test_bad_inputs_in_a_scripted_model():
    scripted = torch.jit.script(make("mstr"))
    features, lengths = ragged_batch([20, 5, 3])
    with pytest.raises(Exception, match=r"MSTR: lengths must lie in \[1, T=20\]"):
        scripted(features, torch.tensor([20, 5, 30]))
    with pytest.raises(Exception, match="MSTR: features have 11 channels"):
        scripted(features[..., :11], lengths)


def test_bad_configuration():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MSTR(INPUT_DIM, CLASSES, embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        VanillaTransformer(INPUT_DIM, CLASSES, embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="p must be >= 2"):
        MSTR(INPUT_DIM, CLASSES, p=1, **SMALL)
    with pytest.raises(ValueError, match="num_classes 0 or >= 2 and at least one output"):
        MSTR(INPUT_DIM, 1, **SMALL)
    with pytest.raises(ValueError, match="at least one output"):
        MSTR(INPUT_DIM, 0, **SMALL)
    with pytest.raises(ValueError, match="classifier_hidden must be two positive sizes"):
        MSTR(INPUT_DIM, CLASSES, classifier_hidden=(8,), **SMALL)
    for model_class in (MSTR, VanillaTransformer):
        with pytest.raises(ValueError, match="implementation must be one of fused, reference"):
            model_class(INPUT_DIM, CLASSES, implementation="naive", **SMALL)


@pytest.mark.parametrize("model_class", [MSTR, VanillaTransformer])
def test_implementation_reaches_every_block(model_class):
    for implementation in ("fused", "reference"):
        model = model_class(INPUT_DIM, CLASSES, implementation=implementation, **SMALL)
        assert [b.attention.implementation for b in model.blocks] == [implementation] * 2


def test_benchmark_cases_run_and_share_weights():
    """The `mstr` bench suite (quick sizes): every implementation runs a training step; fused
    and reference are the same model, no-attention keeps every parameter but skips the op."""
    from fastser.bench.cases import load_suite
    from fastser.bench.measure import make_runner

    (case,) = load_suite("mstr", torch.device("cpu"), torch.float32, quick=True)
    assert list(case.impls) == ["fused", "reference", "no-attention", "transformer"]
    inputs = case.make_inputs()
    losses = {}
    for name, impl in case.impls.items():
        torch.manual_seed(0)  # the same dropout masks
        losses[name] = impl(*inputs)
    torch.testing.assert_close(losses["fused"], losses["reference"])
    assert losses["no-attention"] != losses["fused"]
    for name in case.impls:
        make_runner(case, name, backward=True)()
