"""``fastser cv --model all`` (or a list of methods): the cross-validation of
:mod:`fastser.workflows.cv` for every method that can run on the corpus, in one table.

A method is skipped, with the reason, when its recipe says it cannot give a meaningful result
on the corpus (``Recipe.requirements``: annotations the corpus lacks, such as MMTL's affect
labels or CAN's word timings; an optional extra; SAP without pretrained SSL weights) or when
its run stops on a user error (a corpus or setting it cannot use). Each method's folds go to
``out_dir/<method>/`` (cv.json, cv.md, confusion matrices); the table of mean ± 95% CI of UA,
WA and macro-F1 per method goes to ``leaderboard.md``, ``leaderboard.csv`` and
``leaderboard.json``, the comparison to ``leaderboard.png``. With several seeds each method's
cross-validation is repeated per seed (:func:`fastser.workflows.cv.run_seeds`) and its row is
the mean over seeds ± 95% CI over seeds.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from fastser.data.corpus import Corpus
from fastser.errors import UserError
from fastser.methods import make_recipe
from fastser.train.trainer import TrainConfig
from fastser.workflows.cv import run_cv, run_seeds
from fastser.workflows.data import DataOptions, as_options

#: The metrics of the table, in its column order.
METRICS = ("ua", "wa", "macro_f1")
NAMES = {"ua": "UA", "wa": "WA", "macro_f1": "macro-F1"}
#: The classical reference every table carries when it can run.
REFERENCE = "egemaps"


@dataclass
class Entry:
    """One method's row: ``status`` "ran" (``summary``: metric -> {"mean", "ci95"}, over
    folds, or over ``seeds`` when there are several; ``folds``: per seed), "skipped" or
    "failed" (``reason``). ``speaker_dependent``: its folds share speakers between training
    and test."""

    method: str
    status: str
    settings: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    folds: int = 0
    seconds: float = 0.0
    reason: str = ""
    seeds: list[int] = field(default_factory=list)
    speaker_dependent: bool = False


def run_leaderboard(methods: Sequence[str], corpus: Corpus, protocol: str,
                    configs: Mapping[str, TrainConfig], settings: Mapping[str, dict[str, Any]],
                    out_dir: str | Path, *, data: DataOptions | str | None = None,
                    num_folds: int | None = None, seeds: Sequence[int] | None = None,
                    log: Callable[[str], None] = print) -> list[Entry]:
    """Cross-validate each of ``methods`` (with its TrainConfig and settings) on ``corpus``
    (opened from ``data``) under ``protocol`` (``num_folds``: of the utterance-level k-fold
    protocols) or the fold file of ``data``, once or once per seed of ``seeds``, skipping those
    that cannot run;
    write the table and the plot under ``out_dir``; return the rows (ran first, by mean
    UA)."""
    out_dir = Path(out_dir)
    data = as_options(data or corpus.name)
    entries = []
    for method in methods:
        values = dict(settings.get(method, {}))
        recipe = make_recipe(method, corpus.labels, **values)
        changed = recipe.settings.changed()
        reasons = recipe.requirements(corpus)
        if reasons:
            log(f"{method}: skipped: {'; '.join(reasons)}")
            entries.append(Entry(method, "skipped", changed, reason="; ".join(reasons)))
            continue
        log(f"{method}: {protocol} cross-validation")
        started = time.perf_counter()
        try:
            summary, folds, dependent = _cross_validate(
                lambda labels, m=method: make_recipe(m, labels, **values), corpus, protocol,
                configs[method], out_dir / method, seeds, data=data, num_folds=num_folds,
                log=lambda line, m=method: log(f"  {m} {line}"))
        except UserError as error:
            log(f"{method}: failed: {error}")
            entries.append(Entry(method, "failed", changed, reason=str(error)))
            continue
        entries.append(Entry(method, "ran", changed, summary, folds,
                             time.perf_counter() - started, seeds=list(seeds or []),
                             speaker_dependent=dependent))
    entries = ranked(entries)
    write_leaderboard(entries, out_dir, title=leaderboard_title(data.describe_splits(protocol),
                                                                data.source, seeds))
    return entries


def _cross_validate(make: Callable[[Sequence[str]], Any], corpus: Corpus, protocol: str,
                    config: TrainConfig, out_dir: Path, seeds: Sequence[int] | None,
                    **options: Any) -> tuple[dict[str, dict[str, float]], int, bool]:
    """One method's summary (over folds, or over seeds), its folds per seed and whether they
    are speaker-dependent."""
    if seeds is None:
        runs = [run_cv(make, corpus, protocol, config, out_dir, **options)]
        summary = runs[0].summary
    else:
        over_seeds = run_seeds(make, corpus, protocol, config, out_dir, seeds, **options)
        runs, summary = list(over_seeds.runs.values()), over_seeds.summary
    return (summary, len(runs[0].folds),
            any(f["speaker_dependent"] for run in runs for f in run.folds))


def leaderboard_title(protocol: str, data: str, seeds: Sequence[int] | None = None) -> str:
    """The table's title: the protocol, the corpus and the seeds averaged (when given)."""
    title = f"{protocol} cross-validation on {data}"
    if seeds is None:
        return title
    return f"{title}, mean over seeds {', '.join(map(str, seeds))} (± 95% CI over seeds)"


def ranked(entries: Sequence[Entry]) -> list[Entry]:
    """The rows that ran by mean UA (best first), then the others in their order."""
    ran = sorted((e for e in entries if e.status == "ran"),
                 key=lambda e: -e.summary["ua"]["mean"])
    return ran + [e for e in entries if e.status != "ran"]


def _cell(entry: Entry, metric: str) -> str:
    stat = entry.summary.get(metric)
    return "" if stat is None else f"{stat['mean']:.3f} ± {stat['ci95']:.3f}"


def format_table(entries: Sequence[Entry], title: str) -> str:
    """The Markdown table (and the skipped methods with their reasons)."""
    lines = [f"# {title}", "",
             "| method | " + " | ".join(f"{NAMES[m]} (mean ± 95% CI)" for m in METRICS)
             + " | folds | seconds | settings |",
             "|---|" + "---|" * (len(METRICS) + 3)]
    for e in entries:
        if e.status != "ran":
            continue
        name = f"{e.method} (reference)" if e.method == REFERENCE else e.method
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in e.settings.items())
        lines.append(f"| {name} | " + " | ".join(_cell(e, m) for m in METRICS)
                     + f" | {e.folds} | {e.seconds:.0f} | {settings} |")
    if any(e.speaker_dependent for e in entries):
        lines += ["", "Speaker-dependent: the folds share speakers between training and test."]
    others = [e for e in entries if e.status != "ran"]
    if others:
        lines += ["", "Not run:", ""]
        lines += [f"- {e.method} ({e.status}): {e.reason}" for e in others]
    return "\n".join(lines) + "\n"


def write_leaderboard(entries: Sequence[Entry], out_dir: str | Path, *, title: str) -> None:
    """leaderboard.md, .csv, .json and .png under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "leaderboard.md").write_text(format_table(entries, title))
    (out_dir / "leaderboard.json").write_text(json.dumps(
        {"title": title, "entries": [asdict(e) for e in entries]}, indent=2))
    with open(out_dir / "leaderboard.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "status", *(f"{m}_{k}" for m in METRICS
                                                for k in ("mean", "ci95")),
                         "folds", "seconds", "settings", "reason"])
        for e in entries:
            stats = [e.summary[m][k] if m in e.summary else ""
                     for m in METRICS for k in ("mean", "ci95")]
            writer.writerow([e.method, e.status, *stats, e.folds, round(e.seconds, 1),
                             json.dumps(e.settings), e.reason])
    plot_leaderboard(entries, out_dir / "leaderboard.png", title=title)


def plot_leaderboard(entries: Sequence[Entry], path: str | Path, *, title: str) -> Path:
    """Horizontal bars of each method's mean UA, WA and macro-F1 with their 95% CIs (the
    reference method's UA as a dashed line)."""
    import math

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ran = [e for e in entries if e.status == "ran"][::-1]  # best at the top
    figure = Figure(figsize=(8.0, 1.5 + 0.6 * max(1, len(ran))))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    height = 0.8 / len(METRICS)
    for k, metric in enumerate(METRICS):
        means = [e.summary[metric]["mean"] for e in ran]
        errors = [0.0 if math.isnan(e.summary[metric]["ci95"]) else e.summary[metric]["ci95"]
                  for e in ran]
        offsets = [i + ((len(METRICS) - 1) / 2 - k) * height for i in range(len(ran))]
        axes.barh(offsets, means, height=height, xerr=errors, capsize=2, label=NAMES[metric])
    reference = [e for e in ran if e.method == REFERENCE]
    if reference:
        axes.axvline(reference[0].summary["ua"]["mean"], color="black", linestyle="--",
                     linewidth=1, label=f"{REFERENCE} UA")
    axes.set_yticks(range(len(ran)), [e.method for e in ran])
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("mean over folds (error bars: 95% CI)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png", dpi=100)
    return path
