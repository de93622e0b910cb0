"""fastser.nn.FractalAttention: fused and reference paths agree, ragged batches, TorchScript."""

import pytest
import torch

from fastser.nn import FractalAttention
from optest import check_scripted_in_fresh_process, devices, script_roundtrip


def _pair(device, **kwargs):
    torch.manual_seed(0)
    fused = FractalAttention(32, 4, **kwargs).to(device)
    reference = FractalAttention(32, 4, implementation="reference", **kwargs).to(device)
    reference.load_state_dict(fused.state_dict())
    return fused, reference


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("kwargs", [{}, {"p": 2, "levels": 5, "bias": False}])
def test_fused_matches_reference_with_gradients(device, kwargs):
    fused, reference = _pair(device, **kwargs)
    x = torch.randn(3, 100, 32, device=device)
    lengths = torch.tensor([100, 82, 1], device=device)
    outs, grads = [], []
    for module in (fused, reference):
        out = module(x, lengths)
        out.square().sum().backward()
        outs.append(out)
        grads.append([param.grad for param in module.parameters()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_valid_frames():
    fused, _ = _pair("cpu")
    x = torch.randn(1, 50, 32)
    padded = torch.cat([x, torch.randn(1, 31, 32)], dim=1)
    short = fused(x)
    long = fused(padded, torch.tensor([50]))
    torch.testing.assert_close(long[:, :50], short, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(long[:, 50:], fused.out_proj.bias.expand(1, 31, 32))


@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_torchscript(tmp_path, implementation):
    module = FractalAttention(16, 2, implementation=implementation)
    inputs = [torch.randn(2, 30, 16), torch.tensor([30, 9])]
    path = tmp_path / "module.pt"
    loaded = script_roundtrip(module, inputs, path, atol=1e-5, rtol=1e-5)
    if implementation == "fused":
        with torch.no_grad():
            expected = loaded(*inputs)
        check_scripted_in_fresh_process(path, inputs, expected, tmp_path)


def test_bad_configuration():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        FractalAttention(30, 4)
    with pytest.raises(ValueError, match="p must be >= 2"):
        FractalAttention(32, 4, p=1)
    with pytest.raises(ValueError, match="levels must be >= 1"):
        FractalAttention(32, 4, levels=0)
    with pytest.raises(ValueError, match="implementation must be one of fused, reference"):
        FractalAttention(32, 4, implementation="naive")


@pytest.mark.parametrize("use_reference,implementation", [(True, "reference"),
                                                          (False, "fused")])
def test_use_reference_is_the_deprecated_spelling_of_implementation(use_reference,
                                                                     implementation):
    with pytest.warns(DeprecationWarning, match="use_reference=.* is deprecated"):
        module = FractalAttention(32, 4, use_reference=use_reference)
    assert module.implementation == implementation
    torch.manual_seed(0)
    x = torch.randn(2, 20, 32)
    lengths = torch.tensor([20, 7])
    renamed = FractalAttention(32, 4, implementation=implementation)
    renamed.load_state_dict(module.state_dict())
    torch.testing.assert_close(module(x, lengths), renamed(x, lengths), atol=0, rtol=0)
