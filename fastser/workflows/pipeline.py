"""Train then test: the one pipeline behind ``fastser train``, ``fastser cv`` and
``fastser demo``, with one results format.

:func:`run_fold` trains a recipe on a split's training part (early stopping on its validation
speakers), tests it on the held-out speakers and writes, under the fold's folder, the
trainer's checkpoints and ``metrics.jsonl`` plus ``results.json`` (a :class:`FoldResult`) and
``confusion.png``. :func:`train_model` is ``fastser train``: one fold of a protocol.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from fastser.data.corpus import Corpus, Utterance
from fastser.checkpoint import load_checkpoint
from fastser.data.protocols import Split
from fastser.errors import UserError
from fastser.methods import make_recipe
from fastser.outputs import write_json
from fastser.train import metrics
from fastser.train.evaluation import evaluate
from fastser.train.recipe import Recipe
from fastser.train.resume import check_resume
from fastser.train.trainer import FitResult, TrainConfig, Trainer
from fastser.workflows.data import DataOptions, as_options
from fastser.workflows.run_folder import claim

RESULTS = "results.json"


@dataclass
class FoldResult:
    """What one train-then-test run gives: the run (method, data and its reader options, split,
    settings, training options, class order, fold file), training (best validation metrics,
    seconds, epochs) and the test metrics (UA, WA, F1s, confusion matrix, pure accuracy for
    segment methods; CCC, Pearson's r and MAE of affect targets). Written as results.json.
    ``speaker_dependent``: the split shares speakers between training and test (the
    utterance-level k-fold protocols, a fold file's folds that do)."""

    model: str
    data: str
    protocol: str
    fold: int
    split: str
    test_speakers: list[str]
    settings: dict[str, Any]
    train_config: dict[str, Any]
    best_validation: dict[str, Any] | None
    train_seconds: float
    epochs_run: int
    test: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)
    num_folds: int | None = None
    speaker_dependent: bool = False
    labels: list[str] = field(default_factory=list)
    folds: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FoldRun:
    """A finished fold: the trainer's result (with the trained model) and the fold's result
    (empty test metrics on the non-main processes of a torchrun job)."""

    fit: FitResult
    result: FoldResult
    out_dir: Path


def pick_split(corpus: Corpus, protocol: str, fold: int, seed: int, *,
               data: DataOptions | str | None = None, validation_speakers: int = 1,
               num_folds: int | None = None) -> Split:
    """Fold ``fold`` (1-based) of ``protocol`` (``num_folds``: of the utterance-level k-fold
    protocols), or of the fold file of ``data``, on ``corpus``."""
    options = as_options(data or corpus.name)
    splits = options.splits(corpus, protocol, seed, validation_speakers=validation_speakers,
                            num_folds=num_folds)
    if not 1 <= fold <= len(splits):
        named = f"the fold file {options.folds}" if options.folds else f"protocol {protocol!r}"
        raise UserError(f"--fold {fold}: {named} has folds 1..{len(splits)}")
    return splits[fold - 1]


def validation_speakers(recipe: Recipe, config: TrainConfig) -> int:
    """Speakers per fold held out for validation: ``config.validation_speakers``, or none for
    a method fitted in ``fit_extra`` (no epochs to select among: every non-test speaker
    trains)."""
    return config.validation_speakers if recipe.gradient_trained else 0


def featurize_split(recipe: Recipe, split: Split) -> dict[str, Any]:
    """Items of every utterance of ``split``, by utterance id."""
    utterances: list[Utterance] = [*split.train, *split.validation, *split.test]
    return dict(zip((u.id for u in utterances), recipe.featurize(utterances)))


def run_info(split: Split, *, data: DataOptions | str, protocol: str, fold: int,
             num_folds: int | None = None) -> dict[str, Any]:
    """What a checkpoint stores about the run: the data (source, its reader's options, the
    class set, the fold file: :meth:`DataOptions.run_info`), protocol ("folds" for a fold
    file's), fold (of ``num_folds``), split, the speakers of each part and a digest of the
    utterance ids of each part (a resumed run must match all of them:
    :mod:`fastser.train.resume`)."""
    options = as_options(data)
    parts = {"train": split.train, "validation": split.validation, "test": split.test}
    digest = hashlib.sha256()
    for name, utterances in parts.items():
        digest.update(f"{name}:{','.join(sorted(u.id for u in utterances))};".encode())
    return {**options.run_info(), "num_folds": num_folds,
            "protocol": options.protocol(protocol), "fold": fold, "split": split.name,
            "test_speakers": sorted({u.speaker for u in split.test}),
            "speakers": {name: sorted({u.speaker for u in utterances})
                         for name, utterances in parts.items()},
            "utterances": digest.hexdigest()[:16]}
def augmented_copies(recipe: Recipe, utterances: list[Utterance],
                     copies: MutableMapping[str, list[Any]]) -> list[list[Any]]:
    """The augmented training copies of ``utterances`` (``Recipe.augmented_copies``), made once
    per utterance and kept in ``copies`` (by utterance id) for the next fold."""
    missing = [u for u in utterances if u.id not in copies]
    if missing:
        copies.update(zip((u.id for u in missing), recipe.augmented_copies(missing)))
    return [copies[u.id] for u in utterances]


def run_fold(recipe: Recipe, items: Mapping[str, Any], split: Split, config: TrainConfig,
             out_dir: str | Path, *, data: DataOptions | str, protocol: str, fold: int,
             resume: bool = False, force: bool = False,
             copies: MutableMapping[str, list[Any]] | None = None,
             num_folds: int | None = None) -> FoldRun:
    """Train ``recipe``'s model on ``split.train`` (with the augmented copies the recipe's
    settings ask for; model selection and early stopping on ``split.validation``), test it on
    ``split.test``; ``items`` holds the featurised utterances by id, ``copies`` the augmented
    copies made so far (shared by the folds of a cross-validation). Writes the checkpoints,
    metrics.jsonl, results.json and (models with emotion classes) confusion.png under
    ``out_dir`` (rank 0 of a torchrun job tests and writes; the others return empty test
    metrics). ``data`` (the source, its reader's options, the class set, the fold file) and
    ``num_folds`` are recorded, so that ``fastser eval`` rebuilds the split. The caller holds
    the run folder (:func:`fastser.workflows.run_folder.claim`)."""
    out_dir = Path(out_dir)
    options = as_options(data)
    info = run_info(split, data=options, protocol=protocol, fold=fold, num_folds=num_folds)
    test_speakers = info["test_speakers"]
    trainer = Trainer(recipe, config, out_dir, run_info=info)
    train = list(split.train)
    fit = trainer.fit([items[u.id] for u in train],
                      [items[u.id] for u in split.validation] or None, resume=resume,
                      force=force, train_copies=augmented_copies(
                          recipe, train, {} if copies is None else copies))
    result = FoldResult(recipe.name, options.source, info["protocol"], fold, split.name,
                        test_speakers, recipe.settings.to_dict(), asdict(config), fit.best,
                        fit.seconds, len(fit.history), data_options=dict(options.reader),
                        num_folds=num_folds, speaker_dependent=split.speaker_dependent,
                        labels=list(recipe.label_names), folds=options.folds)
    if not trainer.dist.is_main:
        return FoldRun(fit, result, out_dir)
    result.test = evaluate(recipe, fit.model, [items[u.id] for u in split.test],
                           batch_size=config.eval_batch_size)
    if "confusion" in result.test:
        metrics.plot_confusion_matrix(result.test["confusion"], recipe.label_names,
                                      out_dir / "confusion.png",
                                      title=f"{recipe.name} on {split.name} (test)")
    write_json(out_dir / RESULTS, result.to_dict())
    return FoldRun(fit, result, out_dir)


def train_model(model_name: str, data: DataOptions | str, out_dir: str | Path,
                config: TrainConfig, *, settings: dict[str, Any] | None = None,
                protocol: str = "random", fold: int = 1, resume: bool = False,
                force: bool = False, corpus: Corpus | None = None,
                num_folds: int | None = None) -> FoldRun:
    """``fastser train``: fold ``fold`` of ``protocol`` (or of the fold file of ``data``) on
    the corpus ``data`` names through :func:`run_fold`, in the run folder ``out_dir``
    (claimed first: an earlier run there is refused unless ``resume`` continues it or
    ``force`` replaces it). A resumed run is compared with the stored one before any audio is
    featurised (``force`` lets the safe differences through)."""
    with claim(out_dir, resume=resume, force=force):
        options = as_options(data)
        corpus = corpus or options.open()
        recipe = make_recipe(model_name, corpus.labels, **(settings or {}))
        split = pick_split(corpus, protocol, fold, config.seed, data=options,
                           validation_speakers=validation_speakers(recipe, config),
                           num_folds=num_folds)
        if resume:
            check_resume(load_checkpoint(Path(out_dir) / "last.pt", recipe=model_name),
                         recipe, asdict(config),
                         run_info(split, data=options, protocol=protocol, fold=fold,
                                  num_folds=num_folds),
                         force=force, where=str(out_dir))
        return run_fold(recipe, featurize_split(recipe, split), split, config, out_dir,
                        data=options, protocol=protocol, fold=fold, resume=resume, force=force,
                        num_folds=num_folds)
