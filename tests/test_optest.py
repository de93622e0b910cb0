"""The shared op-test helpers catch what they are meant to catch."""

import pytest
import torch

from optest import check_against_reference, ragged_lengths


def _reference(x):
    return torch.softmax(x, dim=-1)


def _x():
    return (torch.randn(4, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),)


def test_reference_against_itself_passes_in_every_dtype():
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        check_against_reference(_reference, _reference, _x(), dtype=dtype, device="cpu")


def test_wrong_forward_is_caught():
    with pytest.raises(AssertionError, match="output 0"):
        check_against_reference(lambda x: _reference(x) * 1.001, _reference, _x(),
                                dtype=torch.float32, device="cpu")


def test_low_precision_rule_catches_extra_error():
    def sloppy(x):  # compute in float16 after rounding the input to 8 mantissa bits
        return _reference(x.to(torch.bfloat16).to(x.dtype))

    with pytest.raises(AssertionError, match="twice the reference"):
        check_against_reference(sloppy, _reference, _x(), dtype=torch.float16, device="cpu",
                                backward=False, floor=0.0)


def test_wrong_gradient_is_caught():
    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return _reference(x)

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(AssertionError, match="grad 0"):
        check_against_reference(WrongGrad.apply, _reference, _x(), dtype=torch.float32,
                                device="cpu")


def test_ragged_lengths_cover_edges_and_full_length():
    lengths = ragged_lengths(6, 81, edges=(1, 80, 200))
    assert lengths.dtype == torch.int64 and lengths.shape == (6,)
    assert lengths[:3].tolist() == [1, 80, 81]
    assert int(lengths.min()) >= 1 and int(lengths.max()) == 81
