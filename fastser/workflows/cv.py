"""Cross-validation over a speaker-independent protocol: one trained model per fold (the
train-then-test pipeline of :mod:`fastser.workflows.pipeline`), per-fold test metrics, mean ±
95% confidence interval, confusion matrices, all in one folder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fastser.data.corpus import Corpus
from fastser.data.protocols import make_splits
from fastser.train import metrics
from fastser.train.recipe import Recipe
from fastser.train.trainer import TrainConfig
from fastser.workflows.pipeline import run_fold, validation_speakers

SUMMARY_METRICS = ("wa", "ua", "macro_f1", "weighted_f1", "pure_accuracy")


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the Student-t interval; half-width is nan for one value."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, half


@dataclass
class CVResult:
    """Every fold's result (the results.json of :mod:`fastser.workflows.pipeline`) and the
    mean ± 95% CI of each metric."""

    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    out_dir: Path


def run_cv(make_recipe: Callable[[Sequence[str]], Recipe], corpus: Corpus, protocol: str,
           config: TrainConfig, out_dir: str | Path, *, data: str | None = None,
           log: Callable[[str], None] = print) -> CVResult:
    """Train and test one model per fold of ``protocol`` on ``corpus`` (featurised once, for
    every fold), each through :func:`~fastser.workflows.pipeline.run_fold` into
    ``out_dir/foldNN``; writes ``cv.json`` (every fold's result + the summary), ``cv.md`` and
    ``confusion.png`` (summed over folds). ``data``: the corpus source recorded in the results
    (default: the corpus name)."""
    out_dir = Path(out_dir)
    data = data or corpus.name
    featurizer = make_recipe(corpus.labels)
    splits = make_splits(corpus, protocol, seed=config.seed,
                         validation_speakers=validation_speakers(featurizer, config))
    items = dict(zip((u.id for u in corpus), featurizer.featurize(list(corpus))))
    copies: dict[str, list[Any]] = {}
    folds, total = [], None
    for index, split in enumerate(splits):
        run = run_fold(make_recipe(corpus.labels), items, split, config,
                       out_dir / f"fold{index + 1:02d}", data=data, protocol=protocol,
                       fold=index + 1, copies=copies)
        result = run.result.to_dict()
        confusion = np.asarray(result["test"]["confusion"])
        total = confusion if total is None else total + confusion
        folds.append(result)
        test = result["test"]
        log(f"fold {index + 1}/{len(splits)} ({split.name}): "
            f"UA {test['ua']:.3f}  WA {test['wa']:.3f}  macro-F1 {test['macro_f1']:.3f}")
    summary = {}
    for name in SUMMARY_METRICS:
        if all(name in f["test"] for f in folds):
            mean, half = confidence_interval([f["test"][name] for f in folds])
            summary[name] = {"mean": mean, "ci95": half}
    metrics.plot_confusion_matrix(total, corpus.labels, out_dir / "confusion.png",
                                  title=f"{protocol} cross-validation, all folds")
    (out_dir / "cv.json").write_text(json.dumps({"protocol": protocol, "folds": folds,
                                                 "summary": summary}, indent=2))
    (out_dir / "cv.md").write_text(format_summary(protocol, folds, summary))
    return CVResult(folds, summary, out_dir)


def format_summary(protocol: str, folds: list[dict[str, Any]],
                   summary: dict[str, dict[str, float]]) -> str:
    names = [n for n in SUMMARY_METRICS if n in summary]
    lines = [f"# {protocol} cross-validation", "",
             "| fold | test speakers | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for f in folds:
        lines.append(f"| {f['fold']} | {', '.join(f['test_speakers'])} | "
                     + " | ".join(f"{f['test'][n]:.3f}" for n in names) + " |")
    lines.append("| mean ± 95% CI | | " + " | ".join(
        f"{summary[n]['mean']:.3f} ± {summary[n]['ci95']:.3f}" for n in names) + " |")
    return "\n".join(lines) + "\n"
