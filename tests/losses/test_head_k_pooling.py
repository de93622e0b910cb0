"""HeadKPoolingLoss: the module over fastser.ops.head_k_pooling_loss, scripted with
TorchScript (saved, reloaded, run in a process that only loads the library) and exported."""

import math

import pytest
import torch

import optest
from fastser.losses import HeadKPoolingLoss
from fastser.ops import head_k_pooling_loss

NEUTRAL = 2


def _batch():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1, 4, 9, 2])
    labels = torch.tensor([0, 2, 3, 1])
    return torch.randn(int(lengths.sum()), 4, generator=gen), lengths, labels


def test_module_matches_the_function():
    logits, lengths, labels = _batch()
    module = HeadKPoolingLoss(k=0.5, neutral_class=NEUTRAL, negative_weight=0.5, reduction="none")
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    got = module(x, lengths, labels)
    want = head_k_pooling_loss(y, lengths, labels, k=0.5, neutral_class=NEUTRAL,
                               negative_weight=0.5, reduction="none")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)
    assert "neutral_class=2" in repr(module)


def test_scripted_saved_and_reloaded(tmp_path):
    inputs = _batch()
    module = HeadKPoolingLoss(k=0.5, neutral_class=NEUTRAL, reduction="none")
    path = tmp_path / "head_k_pooling_loss.pt"
    loaded = optest.script_roundtrip(module, inputs, path)
    x = inputs[0].clone().requires_grad_()
    loaded(x, *inputs[1:]).sum().backward()  # autograd through the reloaded module
    assert x.grad is not None and x.grad.abs().sum() > 0
    optest.check_scripted_in_fresh_process(path, inputs, module(*inputs), tmp_path)


def test_torch_export():
    inputs = _batch()
    module = HeadKPoolingLoss(neutral_class=NEUTRAL, reduction="sum")
    exported = torch.export.export(module, inputs)
    torch.testing.assert_close(exported.module()(*inputs), module(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(k=0.0), "k"), (dict(k=1.5), "k"), (dict(reduction="avg"), "reduction"),
    (dict(negative_weight=math.inf), "negative_weight"), (dict(neutral_class=-1), "neutral_class"),
])
def test_rejects_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=f"fastser.head_k_pooling_loss: {name}"):
        HeadKPoolingLoss(**kwargs)


def test_rejects_a_neutral_class_past_the_classes_at_call_time():
    logits, lengths, labels = _batch()
    with pytest.raises(ValueError, match="neutral_class must be None or in"):
        HeadKPoolingLoss(neutral_class=4)(logits, lengths, labels)
