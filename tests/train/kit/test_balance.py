"""Class balance: the class weights of a weighted loss and class-balanced sampling."""

from collections import Counter

import numpy as np
import pytest
import torch

from fastser.train.kit.balance import balanced_item_weights, class_weights
from fastser.train.sampler import GlobalBatchSampler


def test_class_weights_are_n_over_c_times_count():
    labels = [0, 0, 0, 0, 1, 1, 3]  # class 2 absent
    expected = [7 / (4 * 4), 7 / (4 * 2), 0.0, 7 / (4 * 1)]
    assert class_weights(labels, 4).tolist() == pytest.approx(expected)
    # scikit-learn's class_weight="balanced" counts only the 3 classes present
    sklearn = pytest.importorskip("sklearn.utils.class_weight")
    present = sklearn.compute_class_weight("balanced", classes=np.array([0, 1, 3]),
                                           y=np.array(labels))
    assert (class_weights(labels, 4)[[0, 1, 3]] * 4 / 3).tolist() == pytest.approx(
        present.tolist())


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        class_weights([0, 4], 4)
    with pytest.raises(ValueError, match="no labels"):
        class_weights([], 4)


def test_balanced_sampling_draws_classes_evenly_and_deterministically():
    labels = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    weights = balanced_item_weights(labels, 3)
    assert [float(weights[labels == c].sum()) for c in range(3)] == pytest.approx([1.0] * 3)
    sampler = GlobalBatchSampler(100, 10, seed=4, weights=weights)
    drawn = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == 10 and all(len(b) == 10 for b in batches)
        drawn.update(int(labels[i]) for b in batches for i in b)
    assert all(abs(drawn[c] / 3000 - 1 / 3) < 0.03 for c in range(3))
    sampler.set_epoch(7)
    first = list(sampler)
    sampler.set_epoch(7)
    assert list(sampler) == first
