"""CCC, Pearson's r and MAE against independent loop implementations in exact fractions and
SciPy, their conventions for constant sequences, and affect_metrics' handling of unknown
values."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from fastser.train.metrics import (affect_metrics, concordance_cc, mean_absolute_error,
                                   pearson_cc)


def loop_ccc(true, pred) -> float:
    """Lin's CCC with population moments, in exact rational arithmetic."""
    t, p = [Fraction(v) for v in true], [Fraction(v) for v in pred]
    n = len(t)
    mt, mp = sum(t) / n, sum(p) / n
    cov = sum((a - mt) * (b - mp) for a, b in zip(t, p)) / n
    vt = sum((a - mt) ** 2 for a in t) / n
    vp = sum((b - mp) ** 2 for b in p) / n
    return float(2 * cov / (vt + vp + (mt - mp) ** 2))


@pytest.mark.parametrize("seed", range(5))
def test_against_independent_versions(seed):
    gen = np.random.default_rng(seed)
    true = gen.uniform(1, 5, 40)
    pred = 0.6 * true + gen.normal(0.5, 0.7, 40)
    assert concordance_cc(true, pred) == pytest.approx(loop_ccc(true, pred), rel=1e-12)
    assert pearson_cc(true, pred) == pytest.approx(pearsonr(true, pred)[0], rel=1e-12)
    assert mean_absolute_error(true, pred) == pytest.approx(
        float(sum(abs(Fraction(a) - Fraction(b)) for a, b in zip(true, pred)) / 40), rel=1e-12)
    # tensors of any float dtype give the same numbers (computed in float64)
    assert concordance_cc(torch.tensor(true), torch.tensor(pred)) == pytest.approx(
        loop_ccc(true, pred), rel=1e-12)


def test_hand_worked_values_and_conventions():
    assert concordance_cc([1, 2, 3], [1, 2, 3]) == 1.0
    assert concordance_cc([1, 2, 3], [3, 2, 1]) == -1.0
    # a shift lowers CCC but not Pearson's r: 2*(2/3) / (2/3 + 2/3 + 1) = 4/7
    assert concordance_cc([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7)
    assert pearson_cc([1, 2, 3], [2, 3, 4]) == pytest.approx(1.0)
    assert mean_absolute_error([1, 2, 3], [2, 3, 5]) == pytest.approx(4 / 3)
    assert concordance_cc([1, 2, 3], [2, 2, 2]) == 0.0  # constant prediction
    assert pearson_cc([1, 2, 3], [2, 2, 2]) == 0.0  # no correlation can be measured
    assert concordance_cc([2, 2], [2, 2]) == 1.0  # identical constants agree


@pytest.mark.parametrize("call, message", [
    (lambda: concordance_cc([1, 2], [1]), "differ in length"),
    (lambda: pearson_cc([], []), "empty"),
    (lambda: mean_absolute_error([[1.0]], [[1.0]]), "must be 1-D"),
    (lambda: concordance_cc([1, math.nan], [1, 2]), "NaN or infinite"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_affect_metrics_per_dimension_over_known_values():
    true = np.array([[1.0, 2.0], [2.0, math.nan], [3.0, 4.0], [4.0, math.nan]])
    pred = np.array([[1.5, 2.5], [2.0, 9.0], [2.5, 3.0], [4.5, 9.0]])
    result = affect_metrics(true, pred, ("valence", "arousal"))
    assert result["valence_ccc"] == pytest.approx(loop_ccc(true[:, 0], pred[:, 0]))
    assert result["arousal_mae"] == pytest.approx(0.75)  # rows 0 and 2 only
    assert result["arousal_ccc"] == pytest.approx(loop_ccc([2.0, 4.0], [2.5, 3.0]))
    assert result["ccc"] == pytest.approx((result["valence_ccc"] + result["arousal_ccc"]) / 2)
    unknown = affect_metrics(np.full((2, 1), math.nan), np.zeros((2, 1)), ("dominance",))
    assert unknown == {}
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        affect_metrics(true, pred[:, :1], ("valence", "arousal"))
