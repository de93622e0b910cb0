"""The data a run uses (a source and its reader's options, the user's class set, official
folds: ``--data``, ``--data-option``, ``--labels``, ``--label-map``, ``--folds``) and
``fastser data check`` / ``convert``: what a user reads about a corpus before training on it,
and any corpus written as a manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from fastser.data.corpus import Corpus, CorpusSummary
from fastser.data.folds import Fold, read_folds, splits_from_folds, unmatched_ids
from fastser.data.labels import LabelMap
from fastser.data.manifest import write_manifest
from fastser.data.protocols import Split, make_splits
from fastser.data.sources import open_corpus
from fastser.errors import UserError
from fastser.methods import make_recipe, method_names

#: The protocol name of runs on a fold file's splits.
FOLDS = "folds"


@dataclass(frozen=True)
class DataOptions:
    """A corpus source opened with its reader's options (``reader``, e.g. IEMOCAP's
    ``improvised_only``), the user's class set (``label_map`` then ``labels``) and,
    optionally, a fold file whose splits replace the generated ones."""

    source: str = "synthetic"
    labels: tuple[str, ...] | None = None
    label_map: LabelMap | None = None
    folds: str | None = None
    reader: Mapping[str, Any] = field(default_factory=dict)

    def open(self) -> Corpus:
        return open_corpus(self.source, labels=self.labels, label_map=self.label_map,
                           **self.reader)

    def protocol(self, protocol: str) -> str:
        """The protocol a run records: ``protocol``, or "folds" with a fold file."""
        return FOLDS if self.folds is not None else protocol

    def describe_splits(self, protocol: str) -> str:
        """The splits in words, for titles: ``protocol``, or the fold file's folds."""
        return f"the folds of {self.folds}" if self.folds is not None else protocol

    def official_folds(self) -> list[Fold]:
        """The folds of the fold file (``folds``)."""
        return read_folds(self.folds)

    def splits(self, corpus: Corpus, protocol: str, seed: int, *, validation_speakers: int = 1,
               num_folds: int | None = None) -> list[Split]:
        """The folds of the fold file, or of ``protocol`` (``num_folds``: of the
        utterance-level k-fold protocols)."""
        if self.folds is None:
            return make_splits(corpus, protocol, seed=seed,
                               validation_speakers=validation_speakers, num_folds=num_folds)
        if num_folds is not None:
            raise UserError("--folds gives the folds; --num-folds applies to the generated "
                            "utterance-kfold protocols")
        return splits_from_folds(corpus, self.official_folds(),
                                 validation_speakers=validation_speakers, seed=seed)

    def run_info(self) -> dict[str, Any]:
        """Plain values for checkpoints and results, from which :meth:`from_run_info`
        rebuilds the options."""
        return {"data": self.source, "data_options": dict(self.reader),
                "labels": None if self.labels is None else list(self.labels),
                "label_map": None if self.label_map is None else self.label_map.to_dict(),
                "folds": self.folds}

    @classmethod
    def from_run_info(cls, run: Mapping[str, Any]) -> "DataOptions":
        """The options a run recorded (runs of earlier releases recorded only the source)."""
        label_map = run.get("label_map")
        return cls(run["data"], None if run.get("labels") is None else tuple(run["labels"]),
                   None if label_map is None else LabelMap.from_dict(label_map),
                   run.get("folds"), dict(run.get("data_options") or {}))


def as_options(data: DataOptions | str) -> DataOptions:
    return data if isinstance(data, DataOptions) else DataOptions(data)


@dataclass
class DataReport:
    """What ``fastser data check`` prints: the corpus summary (with hours of audio), which
    methods can train on it with their default settings (and why the others cannot), and the
    fold file's folds where one is given."""

    source: str
    labels: tuple[str, ...]
    summary: CorpusSummary
    methods: dict[str, list[str]]
    folds: list[dict[str, Any]] | None = None
    unmatched: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "labels": list(self.labels),
                "summary": vars(self.summary), "methods": self.methods, "folds": self.folds,
                "unmatched_fold_ids": self.unmatched}

    def __str__(self) -> str:
        s = self.summary
        lines = [f"{self.source}: {s.utterances} utterances, {s.hours:.2f} hours, "
                 f"{len(s.speakers)} speakers, {len(s.sessions)} sessions", str(s), "",
                 "classes per speaker:", *_speaker_table(self.labels, s), ""]
        lines.append("methods (default settings; `fastser settings MODEL`):")
        for name, reasons in self.methods.items():
            lines.append(f"  {name:<12} " + ("yes" if not reasons else "no: " + reasons[0]))
            lines += [f"  {'':<12}     {reason}" for reason in reasons[1:]]
        if self.folds is not None:
            lines += ["", f"folds ({len(self.folds)}):"]
            lines += [f"  {f['name']}: train {f['train']}, validation {f['validation']}, test "
                      f"{f['test']} utterances" for f in self.folds]
            if self.unmatched:
                lines.append(f"  {len(self.unmatched)} id(s) of the fold file are not in the "
                             f"corpus and are left out (e.g. {self.unmatched[0]!r})")
        return "\n".join(lines)


def _speaker_table(labels: Sequence[str], summary: CorpusSummary) -> list[str]:
    columns = [*labels, *(["(none)"] if summary.unlabelled else []), "total"]
    width = max([7, *map(len, summary.by_speaker)])
    rows = [f"  {'speaker':<{width}} " + " ".join(f"{c:>8}" for c in columns)]
    for speaker, counts in summary.by_speaker.items():
        values = [counts.get(label, 0) for label in labels]
        if summary.unlabelled:
            values.append(summary.speakers[speaker] - sum(values))
        values.append(summary.speakers[speaker])
        rows.append(f"  {speaker:<{width}} " + " ".join(f"{v:>8}" for v in values))
    return rows


def check_data(options: DataOptions, *, seed: int = 0) -> DataReport:
    """The :class:`DataReport` of the corpus ``options`` open (reads every audio file's
    header for the hours)."""
    corpus = options.open()
    methods = {name: method_requirements(name, corpus) for name in method_names()}
    report = DataReport(options.source, corpus.labels, corpus.summary(audio=True), methods)
    if options.folds is not None:
        folds = options.official_folds()
        report.folds = [{"name": split.name, "train": len(split.train),
                         "validation": len(split.validation), "test": len(split.test)}
                        for split in splits_from_folds(corpus, folds, seed=seed)]
        report.unmatched = unmatched_ids(corpus, folds)
    return report


def method_requirements(name: str, corpus: Corpus) -> list[str]:
    """Why method ``name``, with its default settings, cannot train on ``corpus`` (none when
    it can): ``Recipe.requirements``, or why the recipe cannot be made for its classes."""
    try:
        recipe = make_recipe(name, corpus.labels)
    except UserError as error:
        return [str(error).removeprefix(f"{name}: ")]
    return recipe.requirements(corpus)


def convert_data(options: DataOptions, out: str | Path, *, overwrite: bool = False
                 ) -> tuple[Corpus, Path]:
    """Write the corpus ``options`` open as a manifest (``.jsonl``, ``.csv`` or ``.tsv``)."""
    corpus = options.open()
    return corpus, write_manifest(corpus, out, overwrite=overwrite)
