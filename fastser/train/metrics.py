"""Classification metrics of speech emotion recognition.

Labels and predictions are class indices: 1-D integer sequences (lists, NumPy arrays or torch
tensors on any device) of equal length. ``num_classes`` defaults to one more than the largest
index seen. Every metric returns a Python float.

- WA (weighted accuracy): the fraction of correct utterances.
- UA (unweighted accuracy): the mean per-class recall over the classes that occur in the
  ground truth; a class absent from the ground truth has no recall and is left out (so UA
  of a test set holding two classes averages two recalls).
- F1: per class F1 = 2PR / (P + R), 0 when P + R = 0 (precision of a never-predicted class
  is 0). ``macro`` averages it over the classes that occur in the ground truth or the
  predictions, ``weighted`` weights it by ground-truth support, ``micro`` pools every
  decision (equal to WA for single-label classification).
- Pure accuracy (GLRF): from per-segment predictions; see :func:`pure_accuracy`.

Regression metrics of dimensional emotion (affect: valence, arousal, dominance) take 1-D
real-valued sequences of equal length, computed in float64:

- CCC (concordance correlation coefficient, Lin 1989), the challenge metric of dimensional
  SER: 2 cov(t, p) / (var(t) + var(p) + (mean(t) - mean(p))^2), population moments;
  1 for identical constant sequences.
- Pearson's r: cov(t, p) / (sd(t) sd(p)); 0 when either sequence is constant (no linear
  relation can be measured).
- MAE: mean |t - p|, on the values' own scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fastser.outputs import atomic_file

F1_AVERAGES = ("micro", "macro", "weighted")


def _indices(values, name: str) -> np.ndarray:
    """A 1-D int64 array of class indices."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _pair(y_true, y_pred, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    true, pred = _indices(y_true, "y_true"), _indices(y_pred, "y_pred")
    if len(true) != len(pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(true)} vs {len(pred)}")
    if len(true) == 0:
        raise ValueError("y_true and y_pred are empty")
    if num_classes is None:
        num_classes = int(max(true.max(), pred.max())) + 1
    for name, array in (("y_true", true), ("y_pred", pred)):
        if array.min() < 0 or array.max() >= num_classes:
            raise ValueError(f"{name} holds class indices outside [0, {num_classes}): "
                             f"min {array.min()}, max {array.max()}")
    return true, pred, num_classes


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    true, pred, c = _pair(y_true, y_pred, num_classes)
    return np.bincount(true * c + pred, minlength=c * c).reshape(c, c)


def weighted_accuracy(y_true, y_pred) -> float:
    """WA: the fraction of correct predictions."""
    true, pred, _ = _pair(y_true, y_pred, None)
    return float((true == pred).mean())


def unweighted_accuracy(y_true, y_pred, num_classes: int | None = None) -> float:
    """UA: mean recall over the classes present in ``y_true``."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    present = support > 0
    return float((np.diag(matrix)[present] / support[present]).mean())


def f1_score(y_true, y_pred, average: str = "macro", num_classes: int | None = None) -> float:
    """F1 with ``average`` "micro", "macro" or "weighted" (see the module docstring)."""
    if average not in F1_AVERAGES:
        raise ValueError(f"average must be one of {F1_AVERAGES}, got {average!r}")
    matrix = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(matrix)
    fp, fn = matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp
    if average == "micro":
        return float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    if average == "weighted":
        support = matrix.sum(axis=1)
        return float((f1 * support).sum() / support.sum())
    return float(f1[denominator > 0].mean())


def pure_accuracy(segment_predictions, counts, labels, neutral_class: int | None) -> float:
    """GLRF's pure accuracy over utterances split into segments.

    segment_predictions: (S,) class per segment, the segments of B utterances back to back;
    counts: (B,) segments per utterance (each >= 1, summing to S); labels: (B,).
    A non-neutral utterance is correct when at least one of its segments predicts its label
    and every other segment predicts the label or the neutral class; a neutral utterance is
    correct when every segment predicts neutral. With ``neutral_class=None`` every segment
    must predict the label.
    """
    preds = _indices(segment_predictions, "segment_predictions")
    counts_ = _indices(counts, "counts")
    labels_ = _indices(labels, "labels")
    if len(counts_) != len(labels_):
        raise ValueError(f"counts and labels differ in length: {len(counts_)} vs {len(labels_)}")
    if len(counts_) == 0:
        raise ValueError("pure_accuracy needs at least one utterance")
    if counts_.min() < 1:
        raise ValueError(f"every utterance needs at least one segment, counts min is "
                         f"{counts_.min()}")
    if counts_.sum() != len(preds):
        raise ValueError(f"counts sum to {counts_.sum()} but there are {len(preds)} "
                         "segment predictions")
    correct = 0
    for segments, label in zip(np.split(preds, np.cumsum(counts_)[:-1]), labels_):
        hits = segments == label
        if neutral_class is None or label == neutral_class:
            correct += bool(hits.all())
        else:
            correct += bool(hits.any() and (hits | (segments == neutral_class)).all())
    return correct / len(labels_)


def classification_metrics(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """WA, UA, micro-, macro- and weighted F1 in one dict."""
    metrics = {"wa": weighted_accuracy(y_true, y_pred),
               "ua": unweighted_accuracy(y_true, y_pred, num_classes)}
    for average in F1_AVERAGES:
        metrics[f"{average}_f1"] = f1_score(y_true, y_pred, average, num_classes)
    return metrics


def _real_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} holds NaN or infinite values")
        arrays.append(array)
    true, pred = arrays
    if len(true) != len(pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(true)} vs {len(pred)}")
    if len(true) == 0:
        raise ValueError("y_true and y_pred are empty")
    return true, pred


def concordance_cc(y_true, y_pred) -> float:
    """CCC of two real sequences (see the module docstring)."""
    true, pred = _real_pair(y_true, y_pred)
    covariance = ((true - true.mean()) * (pred - pred.mean())).mean()
    denominator = true.var() + pred.var() + (true.mean() - pred.mean()) ** 2
    return 1.0 if denominator == 0 else float(2 * covariance / denominator)


def pearson_cc(y_true, y_pred) -> float:
    """Pearson's correlation of two real sequences (0 when either is constant)."""
    true, pred = _real_pair(y_true, y_pred)
    spread = true.std() * pred.std()
    if spread == 0:
        return 0.0
    return float(((true - true.mean()) * (pred - pred.mean())).mean() / spread)


def mean_absolute_error(y_true, y_pred) -> float:
    """Mean absolute difference of two real sequences."""
    true, pred = _real_pair(y_true, y_pred)
    return float(np.abs(true - pred).mean())


AFFECT_METRICS = {"ccc": concordance_cc, "pearson": pearson_cc, "mae": mean_absolute_error}


def affect_metrics(y_true, y_pred, names: Sequence[str]) -> dict[str, float]:
    """``<name>_ccc``, ``<name>_pearson`` and ``<name>_mae`` of each affect dimension (columns
    of y_true and y_pred, (N, K), named ``names``), over the utterances whose true value is
    known (not NaN), and ``ccc``: their mean CCC. A dimension without a known value has no
    entries."""
    true, pred = (np.asarray(v.detach().cpu().double() if isinstance(v, torch.Tensor) else v,
                             dtype=np.float64) for v in (y_true, y_pred))
    if true.ndim != 2 or true.shape != pred.shape or true.shape[1] != len(names):
        raise ValueError(f"y_true and y_pred must be (N, {len(names)}), got "
                         f"{tuple(true.shape)} and {tuple(pred.shape)}")
    result: dict[str, float] = {}
    for k, name in enumerate(names):
        known = ~np.isnan(true[:, k])
        if known.any():
            for metric, function in AFFECT_METRICS.items():
                result[f"{name}_{metric}"] = function(true[known, k], pred[known, k])
    cccs = [result[f"{name}_ccc"] for name in names if f"{name}_ccc" in result]
    if cccs:
        result["ccc"] = float(np.mean(cccs))
    return result


def plot_confusion_matrix(matrix, labels: Sequence[str], path: str | Path, *,
                          normalize: bool = True, title: str | None = None) -> Path:
    """Write a (C, C) confusion matrix as a PNG heat map (rows normalised to recall when
    ``normalize``), with the counts or rates written in the cells. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"matrix must be square (C, C), got shape {counts.shape}")
    if len(labels) != counts.shape[0]:
        raise ValueError(f"{len(labels)} labels for a {counts.shape[0]}-class matrix")
    values = counts.astype(np.float64)
    if normalize:
        rows = values.sum(axis=1, keepdims=True)
        values = np.divide(values, rows, out=np.zeros_like(values), where=rows > 0)
    size = 1.2 + 0.9 * len(labels)
    figure = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes)
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    threshold = values.max() / 2 if values.size else 0
    for i in ticks:
        for j in ticks:
            text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
            axes.text(j, i, text, ha="center", va="center",
                      color="white" if values[i, j] > threshold else "black")
    figure.tight_layout()
    with atomic_file(path) as file:
        figure.savefig(file, format="png", dpi=100)
    return Path(path)
