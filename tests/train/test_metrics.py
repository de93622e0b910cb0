"""Metrics against hand-worked cases and independent loop implementations (no sklearn)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fastser.train.metrics import (classification_metrics, confusion_matrix, f1_score,
                                   plot_confusion_matrix, pure_accuracy, unweighted_accuracy,
                                   weighted_accuracy)

# ---------------------------------------------------------------- independent versions


def loop_confusion(true, pred, c):
    m = [[0] * c for _ in range(c)]
    for t, p in zip(true, pred):
        m[t][p] += 1
    return m


def loop_scores(true, pred, c):
    """(accuracy, UA over present classes, micro, macro, weighted F1) by counting."""
    acc = sum(t == p for t, p in zip(true, pred)) / len(true)
    recalls, f1s, weighted = [], [], 0.0
    for k in range(c):
        tp = sum(1 for t, p in zip(true, pred) if t == k and p == k)
        n_true = sum(1 for t in true if t == k)
        n_pred = sum(1 for p in pred if p == k)
        if n_true:
            recalls.append(tp / n_true)
        if n_true or n_pred:
            precision = tp / n_pred if n_pred else 0.0
            recall = tp / n_true if n_true else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            f1s.append(f1)
            weighted += f1 * n_true
    return acc, sum(recalls) / len(recalls), acc, sum(f1s) / len(f1s), weighted / len(true)


def loop_pure(preds, counts, labels, neutral):
    correct, start = 0, 0
    for n, label in zip(counts, labels):
        segs = preds[start:start + n]
        start += n
        if neutral is None or label == neutral:
            ok = all(s == label for s in segs)
        else:
            ok = any(s == label for s in segs) and all(s in (label, neutral) for s in segs)
        correct += ok
    return correct / len(labels)


# ---------------------------------------------------------------- hand-worked cases

TRUE = [0, 0, 0, 1, 1, 2]
PRED = [0, 1, 0, 1, 2, 2]


def test_hand_worked_case():
    # recalls 2/3, 1/2, 1; precisions 1, 1/2, 1/2; F1s 0.8, 0.5, 2/3
    assert confusion_matrix(TRUE, PRED).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert weighted_accuracy(TRUE, PRED) == pytest.approx(4 / 6)
    assert unweighted_accuracy(TRUE, PRED) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert f1_score(TRUE, PRED, "micro") == pytest.approx(4 / 6)
    assert f1_score(TRUE, PRED, "macro") == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert f1_score(TRUE, PRED, "weighted") == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6)


def test_classes_absent_from_the_ground_truth():
    # 4 classes; class 2 never occurs, class 3 is only predicted
    true, pred = [0, 0, 1, 1], [0, 3, 1, 1]
    assert confusion_matrix(true, pred, num_classes=4).shape == (4, 4)
    assert unweighted_accuracy(true, pred, num_classes=4) == pytest.approx((0.5 + 1.0) / 2)
    # macro over {0, 1, 3}: F1 2/3, 1, 0 (class 3: precision 0, no support)
    assert f1_score(true, pred, "macro", num_classes=4) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert f1_score(true, pred, "weighted", num_classes=4) == pytest.approx((2 * 2 / 3 + 2) / 4)


def test_perfect_and_all_wrong():
    assert classification_metrics([1, 2, 0], [1, 2, 0]) == {
        "wa": 1.0, "ua": 1.0, "micro_f1": 1.0, "macro_f1": 1.0, "weighted_f1": 1.0}
    wrong = classification_metrics([0, 0, 1], [1, 1, 0])
    assert all(value == 0.0 for value in wrong.values())


def test_pure_accuracy_hand_worked():
    # neutral = 0; utterances: label 2 [2 0 2] ok, label 2 [0 0] no hit, label 2 [2 1] other
    # emotion, label 0 [0 0 0] ok, label 0 [0 3] not all neutral, label 1 [1] ok
    preds = [2, 0, 2, 0, 0, 2, 1, 0, 0, 0, 0, 3, 1]
    counts = [3, 2, 2, 3, 2, 1]
    labels = [2, 2, 2, 0, 0, 1]
    assert pure_accuracy(preds, counts, labels, neutral_class=0) == pytest.approx(3 / 6)
    # without a neutral class every segment must hit: [2 0 2] fails now
    assert pure_accuracy(preds, counts, labels, neutral_class=None) == pytest.approx(2 / 6)


# ---------------------------------------------------------------- random cases


@pytest.mark.parametrize("seed", range(8))
def test_random_cases_match_loop_versions(seed):
    rng = random.Random(seed)
    c = rng.randint(2, 6)
    n = rng.randint(1, 40)
    true = [rng.randrange(c) for _ in range(n)]
    pred = [rng.choice([t, rng.randrange(c)]) for t in true]
    assert confusion_matrix(true, pred, c).tolist() == loop_confusion(true, pred, c)
    metrics = classification_metrics(true, pred, c)
    expected = loop_scores(true, pred, c)
    for key, value in zip(("wa", "ua", "micro_f1", "macro_f1", "weighted_f1"), expected):
        assert metrics[key] == pytest.approx(value), key
    counts = [rng.randint(1, 5) for _ in range(n)]
    segs = [rng.choice([true[i], 0, rng.randrange(c)]) for i in range(n) for _ in range(counts[i])]
    for neutral in (0, None):
        assert pure_accuracy(segs, counts, true, neutral) == pytest.approx(
            loop_pure(segs, counts, true, neutral))


def test_accepts_tensors_arrays_and_lists():
    expected = classification_metrics(TRUE, PRED)
    assert classification_metrics(torch.tensor(TRUE), torch.tensor(PRED)) == expected
    assert classification_metrics(np.array(TRUE, np.int32), np.array(PRED, np.int8)) == expected
    assert pure_accuracy(torch.tensor([1, 1]), torch.tensor([2]), torch.tensor([1]), 0) == 1.0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("true, pred, kwargs, message", [
    ([0, 1], [0], {}, "differ in length"),
    ([], [], {}, "empty"),
    ([0, 3], [0, 1], {"num_classes": 3}, r"y_true holds class indices outside \[0, 3\)"),
    ([0, 1], [0, -1], {}, "y_pred holds class indices outside"),
    ([0.0, 1.0], [0, 1], {}, "integer class indices"),
    ([[0, 1]], [[0, 1]], {}, "must be 1-D"),
])
def test_label_errors(true, pred, kwargs, message):
    with pytest.raises(ValueError, match=message):
        unweighted_accuracy(true, pred, **kwargs)


def test_f1_average_error():
    with pytest.raises(ValueError, match="average must be one of"):
        f1_score(TRUE, PRED, "samples")


@pytest.mark.parametrize("preds, counts, labels, message", [
    ([0, 1], [1], [0, 1], "counts and labels differ"),
    ([0, 1], [1, 2], [0, 1], "counts sum to 3 but there are 2"),
    ([0, 1], [2, 0], [0, 1], "at least one segment"),
    ([], [], [], "at least one utterance"),
])
def test_pure_accuracy_errors(preds, counts, labels, message):
    with pytest.raises(ValueError, match=message):
        pure_accuracy(preds, counts, labels, 0)


# ---------------------------------------------------------------- plot


def test_plot_confusion_matrix_writes_a_png(tmp_path):
    matrix = confusion_matrix(TRUE, PRED, 4)
    for normalize in (True, False):
        path = plot_confusion_matrix(matrix, ["neutral", "happy", "sad", "angry"],
                                     tmp_path / "plots" / f"cm{normalize}.png",
                                     normalize=normalize, title="fold 1")
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with pytest.raises(ValueError, match="must be square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="3 labels for a 2-class matrix"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b", "c"], tmp_path / "x.png")
