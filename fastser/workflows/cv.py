"""Cross-validation over a speaker-independent protocol: one trained model per fold, per-fold
test metrics, mean ± 95% confidence interval, confusion matrices, all in one folder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fastser.data.protocols import make_splits
from fastser.data.corpus import Corpus
from fastser.train import metrics
from fastser.train.evaluation import evaluate
from fastser.train.recipe import Recipe
from fastser.train.trainer import TrainConfig, Trainer

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
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    out_dir: Path


def run_cv(make_recipe: Callable[[Sequence[str]], Recipe], corpus: Corpus, protocol: str,
           config: TrainConfig, out_dir: str | Path, *, log: Callable[[str], None] = print
           ) -> CVResult:
    """Train and test one model per fold of ``protocol`` on ``corpus``; writes
    ``cv.json``, ``cv.md``, ``confusion.png`` (summed over folds) and one folder per fold."""
    out_dir = Path(out_dir)
    splits = make_splits(corpus, protocol, seed=config.seed)
    featurizer = make_recipe(corpus.labels)
    items = dict(zip((u.id for u in corpus), featurizer.featurize(list(corpus))))
    folds, total = [], None
    for index, split in enumerate(splits):
        recipe = make_recipe(corpus.labels)
        fold_dir = out_dir / f"fold{index + 1:02d}"
        train = [items[u.id] for u in split.train]
        val = [items[u.id] for u in split.validation] or None
        test = [items[u.id] for u in split.test]
        fit = Trainer(recipe, config, fold_dir).fit(train, val)
        result = evaluate(recipe, fit.model, test, batch_size=config.eval_batch_size)
        confusion = np.asarray(result["confusion"])
        metrics.plot_confusion_matrix(confusion, corpus.labels, fold_dir / "confusion.png",
                                      title=f"{split.name}")
        total = confusion if total is None else total + confusion
        fold = {"fold": index + 1, "split": split.name,
                "test_speakers": sorted({u.speaker for u in split.test}),
                "train_seconds": fit.seconds, **result}
        folds.append(fold)
        log(f"fold {index + 1}/{len(splits)} ({split.name}): "
            f"UA {result['ua']:.3f}  WA {result['wa']:.3f}  macro-F1 {result['macro_f1']:.3f}")
    summary = {}
    for name in SUMMARY_METRICS:
        if all(name in f for f in folds):
            mean, half = confidence_interval([f[name] for f in folds])
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
                     + " | ".join(f"{f[n]:.3f}" for n in names) + " |")
    lines.append("| mean ± 95% CI | | " + " | ".join(
        f"{summary[n]['mean']:.3f} ± {summary[n]['ci95']:.3f}" for n in names) + " |")
    return "\n".join(lines) + "\n"
