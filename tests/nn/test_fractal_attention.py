"""fastser.nn.FractalAttention: fused and reference paths agree, ragged batches, TorchScript."""

import pytest
import torch

from fastser.nn import FractalAttention
from optest import check_scripted_in_fresh_process, devices, script_roundtrip


def _pair(device, **kwargs):
    torch.manual_seed(0)
    fused = FractalAttention(32, 4, **kwargs).to(device)
    reference = FractalAttention(32, 4, use_reference=True, **kwargs).to(device)
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


@pytest.mark.parametrize("use_reference", [False, True])
def test_torchscript(tmp_path, use_reference):
    module = FractalAttention(16, 2, use_reference=use_reference)
    inputs = [torch.randn(2, 30, 16), torch.tensor([30, 9])]
    path = tmp_path / "module.pt"
    loaded = script_roundtrip(module, inputs, path, atol=1e-5, rtol=1e-5)
    if not use_reference:
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
