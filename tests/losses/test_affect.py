"""Affect losses: 1 - CCC agrees with the CCC metric (float64), MAE and MSE by hand, gradients
checked in float64."""

from __future__ import annotations

import pytest
import torch

from fastser.losses import affect_loss, concordance_loss
from fastser.train.metrics import concordance_cc


def test_concordance_loss_is_one_minus_the_metric():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(30, 3, generator=gen), torch.randn(30, 3, generator=gen)
    losses = concordance_loss(pred.double(), target.double())
    for k in range(3):
        assert float(losses[k]) == pytest.approx(1 - concordance_cc(target[:, k], pred[:, k]),
                                                 abs=1e-6)


def test_mae_and_mse_by_hand():
    pred = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    target = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(affect_loss(pred, target, "mae"), torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(affect_loss(pred, target, "mse"), torch.tensor([2.5, 0.5]))


def test_ccc_loss_stays_finite_for_equal_constants():
    ones = torch.ones(4, 1, requires_grad=True)
    loss = affect_loss(ones, torch.ones(4, 1), "ccc")
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(ones.grad).all()


def test_gradients():
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    for kind in ("ccc", "mae", "mse"):
        pred = torch.randn(8, 2, generator=gen, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda p, kind=kind: affect_loss(p, target, kind).double(), (pred,))


def test_bad_arguments():
    with pytest.raises(ValueError, match="affect loss must be one of"):
        affect_loss(torch.zeros(2, 1), torch.zeros(2, 1), "huber")
    with pytest.raises(ValueError, match=r"must be \(N, K\) alike"):
        affect_loss(torch.zeros(2, 1), torch.zeros(2, 2), "mae")
