"""``fastser eval``: the metrics of a trained checkpoint on its run's held-out speakers or on a
whole corpus."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from fastser.data.corpus import Corpus
from fastser.errors import UserError
from fastser.inference.checkpoint import load_trained
from fastser.train.evaluation import evaluate
from fastser.train.recipe import Recipe
from fastser.workflows.data import DataOptions
from fastser.workflows.pipeline import pick_split

SPLITS = ("test", "all")


def evaluate_checkpoint(path: str | Path, data: DataOptions | str | None = None, *,
                        split: str = "test", device: str = "cpu", batch_size: int = 32,
                        settings: Mapping[str, Any] | None = None,
                        stored_paths: bool = False) -> dict[str, Any]:
    """Metrics of a checkpoint on a corpus: ``split="test"`` re-creates the held-out speakers
    of its training run (same protocol or fold file, fold and seed), ``"all"`` uses every
    utterance. ``data``: the corpus (and class set) to evaluate on; default: the run's own,
    with its reader options and the class set it trained with (the run's own source given
    without reader options is opened with the run's). ``settings`` / ``stored_paths``: the
    paths the model may use (see load_trained)."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    trained = load_trained(path, device=device, settings=settings, stored_paths=stored_paths)
    run = trained.checkpoint.get("run", {})
    options = _data(path, data, run)
    corpus = in_model_classes(options.open(), trained.recipe, options.source)
    if split == "all":
        utterances = list(corpus)
    else:
        if "protocol" not in run:
            raise UserError(f"checkpoint {path} holds no training split; use split='all'")
        train_config = trained.checkpoint["train_config"]
        folds = DataOptions(options.source, folds=run.get("folds"))
        utterances = list(pick_split(corpus, run["protocol"], run["fold"], train_config["seed"],
                                     data=folds, validation_speakers=train_config.get(
                                         "validation_speakers", 1),
                                     num_folds=run.get("num_folds")).test)
    items = trained.recipe.featurize(utterances)
    return evaluate(trained.recipe, trained.model, items, batch_size=batch_size)


def _data(path: str | Path, data: DataOptions | str | None,
          run: Mapping[str, Any]) -> DataOptions:
    """The data to evaluate on (:func:`evaluate_checkpoint`)."""
    if data is None:
        if "data" not in run:
            raise UserError(f"checkpoint {path} does not name its data: pass a data source")
        return DataOptions.from_run_info(run)
    options = data if isinstance(data, DataOptions) else DataOptions(data)
    if options.source == run.get("data") and not options.reader and run.get("data_options"):
        options = replace(options, reader=dict(run["data_options"]))
    return options


def in_model_classes(corpus: Corpus, recipe: Recipe, source: str) -> Corpus:
    """``corpus`` in the model's class order; UserError when it holds a class the model does
    not know, or (affect-only models) none of the model's affect targets."""
    if recipe.predicts_emotion:
        unknown = [label for label in corpus.labels if label not in recipe.label_names]
        if unknown:
            raise UserError(f"corpus {source!r} has labels {list(corpus.labels)}; the model "
                            f"was trained on {recipe.label_names} and does not know {unknown} "
                            "(select classes with --labels, merge them with --label-map)")
        return Corpus(corpus.name, tuple(recipe.label_names), corpus.utterances)
    if not any(getattr(u, name) is not None for u in corpus for name in recipe.affect_targets):
        raise UserError(f"corpus {source!r} has no values of the model's affect targets "
                        f"{list(recipe.affect_targets)}")
    return corpus
