"""Cross-validation over a protocol or a fold file's official folds: one trained model per fold
(the train-then-test pipeline of :mod:`fastser.workflows.pipeline`), per-fold test metrics,
mean ± 95% confidence interval (of UA, WA, F1 for the classes; of CCC, Pearson's r and MAE
for affect targets), confusion matrices, all in one folder; and the same repeated over
several seeds (:func:`run_seeds`, ``--seeds 0-9``: MSTR's protocol), averaged."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping, Sequence

import numpy as np

from fastser.data.corpus import Corpus
from fastser.errors import UserError
from fastser.outputs import write_json, write_text
from fastser.train import metrics
from fastser.train.recipe import Recipe
from fastser.train.trainer import TrainConfig
from fastser.workflows.data import DataOptions, as_options
from fastser.workflows.pipeline import run_fold, validation_speakers
from fastser.workflows.run_folder import claim

#: The class metrics cross-validation summarises, then "ccc" (the mean CCC of affect targets).
SUMMARY_METRICS = ("wa", "ua", "macro_f1", "weighted_f1", "pure_accuracy", "ccc")
#: The folders of the folds (fold01, fold02, ...), as a regular expression.
FOLD_FOLDER = r"fold\d{2,}"


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the Student-t interval; half-width is nan for one value."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, half


def summary_metrics(test: dict[str, Any]) -> list[str]:
    """The metrics of a fold's test results that cross-validation summarises, in order: the
    classes' (:data:`SUMMARY_METRICS`), then each affect dimension's CCC, Pearson's r, MAE."""
    affect = [key for key in test
              if key.rpartition("_")[2] in metrics.AFFECT_METRICS and key not in SUMMARY_METRICS]
    return [name for name in SUMMARY_METRICS if name in test] + affect


def headline(test: dict[str, Any]) -> str:
    """The main test metrics in one line: UA, WA, macro-F1 of the classes, the CCC of each
    affect dimension."""
    parts = []
    if "ua" in test:
        parts.append(f"UA {test['ua']:.3f}  WA {test['wa']:.3f}  macro-F1 "
                     f"{test['macro_f1']:.3f}")
    parts += [f"{key[:-4]} CCC {value:.3f}" for key, value in test.items()
              if key.endswith("_ccc")]
    return "  ".join(parts)


@dataclass
class CVResult:
    """Every fold's result (the results.json of :mod:`fastser.workflows.pipeline`) and the
    mean ± 95% CI of each metric."""

    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    out_dir: Path


def run_cv(make_recipe: Callable[[Sequence[str]], Recipe], corpus: Corpus, protocol: str,
           config: TrainConfig, out_dir: str | Path, *, data: DataOptions | str | None = None,
           num_folds: int | None = None, items: Mapping[str, Any] | None = None,
           copies: MutableMapping[str, list[Any]] | None = None, force: bool = False,
           log: Callable[[str], None] = print) -> CVResult:
    """Train and test one model per fold of ``protocol`` (``num_folds``: of the utterance-level
    k-fold protocols), or of the fold file of ``data``, on ``corpus`` (featurised once, for
    every fold, unless ``items`` by utterance id are given; ``copies``: the augmented training
    copies made so far, by utterance id, filled as the folds need them), each through
    :func:`~fastser.workflows.pipeline.run_fold` into ``out_dir/foldNN``; writes ``cv.json``
    (every fold's result + the summary), ``cv.md`` and ``confusion.png`` (summed over folds;
    models with emotion classes). ``data``: the corpus source (with its reader's options,
    class set and fold file) recorded in the results (default: the corpus name). The run
    folder is claimed first: an earlier run there is refused unless ``force`` replaces it."""
    out_dir = Path(out_dir)
    with claim(out_dir, force=force, parts=FOLD_FOLDER):
        return _run_cv(make_recipe, corpus, protocol, config, out_dir,
                       as_options(data or corpus.name), num_folds, items, copies, log)


def _run_cv(make_recipe, corpus: Corpus, protocol: str, config: TrainConfig, out_dir: Path,
            data: DataOptions, num_folds: int | None, items: Mapping[str, Any] | None,
            copies: MutableMapping[str, list[Any]] | None,
            log: Callable[[str], None]) -> CVResult:
    featurizer = make_recipe(corpus.labels)
    splits = data.splits(corpus, protocol, config.seed,
                         validation_speakers=validation_speakers(featurizer, config),
                         num_folds=num_folds)
    protocol = data.protocol(protocol)
    if items is None:
        items = featurize_corpus(featurizer, corpus)
    copies = {} if copies is None else copies
    folds, total = [], None
    for index, split in enumerate(splits):
        run = run_fold(make_recipe(corpus.labels), items, split, config,
                       out_dir / f"fold{index + 1:02d}", data=data, protocol=protocol,
                       fold=index + 1, copies=copies, num_folds=num_folds)
        result = run.result.to_dict()
        test = result["test"]
        if "confusion" in test:
            confusion = np.asarray(test["confusion"])
            total = confusion if total is None else total + confusion
        folds.append(result)
        log(f"fold {index + 1}/{len(splits)} ({split.name}): {headline(test)}")
    summary = {}
    for name in summary_metrics(folds[0]["test"]):
        if all(name in f["test"] for f in folds):
            mean, half = confidence_interval([f["test"][name] for f in folds])
            summary[name] = {"mean": mean, "ci95": half}
    if total is not None:
        metrics.plot_confusion_matrix(total, folds[0]["labels"], out_dir / "confusion.png",
                                      title=f"{protocol} cross-validation, all folds")
    dependent = any(f["speaker_dependent"] for f in folds)
    write_json(out_dir / "cv.json", {"protocol": protocol, "seed": config.seed,
                                     "speaker_dependent": dependent, "folds": folds,
                                     "summary": summary})
    write_text(out_dir / "cv.md", format_summary(protocol, folds, summary))
    return CVResult(folds, summary, out_dir)


def featurize_corpus(recipe: Recipe, corpus: Corpus) -> dict[str, Any]:
    """Every utterance's item, by id, from ``recipe``."""
    return dict(zip((u.id for u in corpus), recipe.featurize(list(corpus))))


@dataclass
class SeedsResult:
    """One cross-validation per seed and, per metric, the mean over seeds of each seed's
    mean over folds, its standard deviation and 95% CI over seeds."""

    runs: dict[int, CVResult]
    summary: dict[str, dict[str, float]]
    out_dir: Path


def parse_seeds(text: str) -> list[int]:
    """Seeds from "0-9" (a range, both ends included), "0,3,7" or "5"; UserError otherwise."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            lo, hi = int(first), int(last) if dash else int(first)
            if lo < 0 or hi < lo:
                raise ValueError
            seeds.extend(range(lo, hi + 1))
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected seeds >= 0 as 'A-B' (a range), 'A,B,C' "
                        f"or 'A'") from None
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def run_seeds(make_recipe: Callable[[Sequence[str]], Recipe], corpus: Corpus, protocol: str,
              config: TrainConfig, out_dir: str | Path, seeds: Sequence[int], *,
              data: DataOptions | str | None = None, num_folds: int | None = None,
              force: bool = False,
              log: Callable[[str], None] = print) -> SeedsResult:
    """:func:`run_cv` once per seed (the seed of the splits, the initialisation and the
    batches) into ``out_dir/seedS``, the corpus featurised once; writes ``seeds.json`` (every
    seed's summary and the average) and ``seeds.md``."""
    out_dir = Path(out_dir)
    items = featurize_corpus(make_recipe(corpus.labels), corpus)
    copies: dict[str, list[Any]] = {}
    runs = {}
    for seed in seeds:
        log(f"seed {seed}:")
        runs[seed] = run_cv(make_recipe, corpus, protocol, replace(config, seed=seed),
                            out_dir / f"seed{seed}", data=data, num_folds=num_folds,
                            items=items, copies=copies, force=force, log=log)
    summary = {}
    first = next(iter(runs.values()))
    for name in first.summary:
        if all(name in run.summary for run in runs.values()):
            means = [run.summary[name]["mean"] for run in runs.values()]
            mean, half = confidence_interval(means)
            std = float(np.std(means, ddof=1)) if len(means) > 1 else math.nan
            summary[name] = {"mean": mean, "std": std, "ci95": half}
    protocol = first.folds[0]["protocol"]  # "folds" for a fold file's
    dependent = any(f["speaker_dependent"] for run in runs.values() for f in run.folds)
    write_json(out_dir / "seeds.json", {
        "protocol": protocol, "seeds": list(seeds), "speaker_dependent": dependent,
        "per_seed": {str(s): run.summary for s, run in runs.items()}, "summary": summary})
    names = list(summary)
    lines = [f"# {protocol} cross-validation over seeds {', '.join(map(str, seeds))}", "",
             "| seed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for seed, run in runs.items():
        lines.append(f"| {seed} | " + " | ".join(f"{run.summary[n]['mean']:.3f}"
                                                 for n in names) + " |")
    lines.append("| mean ± std (95% CI) | " + " | ".join(
        f"{summary[n]['mean']:.3f} ± {summary[n]['std']:.3f} ({summary[n]['ci95']:.3f})"
        for n in names) + " |")
    write_text(out_dir / "seeds.md", "\n".join(lines) + "\n")
    return SeedsResult(runs, summary, out_dir)


def format_summary(protocol: str, folds: list[dict[str, Any]],
                   summary: dict[str, dict[str, float]]) -> str:
    names = list(summary)
    dependent = any(f["speaker_dependent"] for f in folds)
    note = (["Speaker-dependent: the folds share speakers between training and test.", ""]
            if dependent else [])
    lines = [f"# {protocol} cross-validation", "", *note,
             "| fold | test speakers | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for f in folds:
        lines.append(f"| {f['fold']} | {', '.join(f['test_speakers'])} | "
                     + " | ".join(f"{f['test'][n]:.3f}" for n in names) + " |")
    lines.append("| mean ± 95% CI | | " + " | ".join(
        f"{summary[n]['mean']:.3f} ± {summary[n]['ci95']:.3f}" for n in names) + " |")
    return "\n".join(lines) + "\n"
