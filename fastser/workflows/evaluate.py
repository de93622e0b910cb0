"""``fastser eval``: the metrics of a trained checkpoint on its run's held-out speakers or on a
whole corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fastser.data.sources import open_corpus
from fastser.errors import UserError
from fastser.inference.checkpoint import load_trained
from fastser.train.evaluation import evaluate
from fastser.workflows.pipeline import pick_split

SPLITS = ("test", "all")


def evaluate_checkpoint(path: str | Path, source: str | None = None, *, split: str = "test",
                        device: str = "cpu", batch_size: int = 32,
                        settings: Mapping[str, Any] | None = None,
                        stored_paths: bool = False,
                        data_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of a checkpoint on a corpus: ``split="test"`` re-creates the held-out speakers
    of its training run (same protocol, fold and seed), ``"all"`` uses every utterance. The
    run's own corpus (``source`` None or the same) is opened with the run's reader options
    unless ``data_options`` are given. ``settings`` / ``stored_paths``: the paths the model
    may use (see load_trained)."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    trained = load_trained(path, device=device, settings=settings, stored_paths=stored_paths)
    run = trained.checkpoint.get("run", {})
    source = source or run.get("data")
    if source is None:
        raise UserError(f"checkpoint {path} does not name its data: pass a data source")
    options = data_options or ((run.get("data_options") or {}) if source == run.get("data")
                               else {})
    corpus = open_corpus(source, **options)
    if list(corpus.labels) != trained.recipe.label_names:
        raise UserError(f"corpus {source!r} has labels {list(corpus.labels)}, the model was "
                        f"trained on {trained.recipe.label_names}")
    if split == "all":
        utterances = list(corpus)
    else:
        if "protocol" not in run:
            raise UserError(f"checkpoint {path} holds no training split; use split='all'")
        train_config = trained.checkpoint["train_config"]
        utterances = list(pick_split(corpus, run["protocol"], run["fold"], train_config["seed"],
                                     validation_speakers=train_config.get(
                                         "validation_speakers", 1),
                                     num_folds=run.get("num_folds")).test)
    items = trained.recipe.featurize(utterances)
    return evaluate(trained.recipe, trained.model, items, batch_size=batch_size)
