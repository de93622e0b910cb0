"""Whole runs behind the command line: train one model on a corpus split and test it, load a
trained model back from its checkpoint, evaluate a checkpoint on a corpus."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastser.data.corpus import Corpus
from fastser.data.protocols import Split, make_splits
from fastser.data.sources import open_corpus
from fastser.inference.checkpoint import load_trained
from fastser.methods import make_recipe
from fastser.train import metrics
from fastser.train.evaluation import evaluate
from fastser.train.trainer import FitResult, TrainConfig, Trainer


def pick_split(corpus: Corpus, protocol: str, fold: int, seed: int) -> Split:
    splits = make_splits(corpus, protocol, seed=seed)
    if not 1 <= fold <= len(splits):
        raise ValueError(f"--fold {fold}: protocol {protocol!r} has folds 1..{len(splits)}")
    return splits[fold - 1]


@dataclass
class TrainRun:
    fit: FitResult
    test: dict[str, Any]
    out_dir: Path


def train_model(model_name: str, source: str, out_dir: str | Path, config: TrainConfig, *,
                recipe_config: dict[str, Any] | None = None, protocol: str = "random",
                fold: int = 1, resume: bool = False, corpus: Corpus | None = None) -> TrainRun:
    """Train ``model_name`` on the training part of ``protocol``'s fold ``fold`` of the corpus
    ``source``, early-stop on its validation speakers, test on its held-out speakers; writes
    checkpoints, metrics.jsonl, results.json and confusion.png under ``out_dir`` (rank 0 of a
    torchrun job tests and writes; the other ranks return an empty test result)."""
    out_dir = Path(out_dir)
    corpus = corpus or open_corpus(source)
    split = pick_split(corpus, protocol, fold, config.seed)
    recipe = make_recipe(model_name, corpus.labels, **(recipe_config or {}))
    train = recipe.featurize(list(split.train))
    val = recipe.featurize(list(split.validation)) or None
    test = recipe.featurize(list(split.test))
    run_info = {"data": source, "protocol": protocol, "fold": fold, "split": split.name,
                "test_speakers": sorted({u.speaker for u in split.test})}
    trainer = Trainer(recipe, config, out_dir, run_info=run_info)
    fit = trainer.fit(train, val, resume=resume)
    if not trainer.dist.is_main:
        return TrainRun(fit, {}, out_dir)
    result = evaluate(recipe, fit.model, test, batch_size=config.eval_batch_size)
    metrics.plot_confusion_matrix(result["confusion"], corpus.labels, out_dir / "confusion.png",
                                  title=f"{model_name} on {split.name} (test)")
    summary = {"model": model_name, **run_info, "train_config": asdict(config),
               "recipe_config": recipe.config, "best_validation": fit.best,
               "train_seconds": fit.seconds, "epochs_run": len(fit.history), "test": result}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return TrainRun(fit, result, out_dir)


def evaluate_checkpoint(path: str | Path, source: str | None = None, *, split: str = "test",
                        device: str = "cpu", batch_size: int = 32) -> dict[str, Any]:
    """Metrics of a checkpoint on a corpus: ``split="test"`` re-creates the held-out speakers
    of its training run (same protocol, fold and seed), ``"all"`` uses every utterance."""
    trained = load_trained(path, device=device)
    run = trained.checkpoint.get("run", {})
    source = source or run.get("data")
    if source is None:
        raise ValueError(f"checkpoint {path} does not name its data: pass a data source")
    corpus = open_corpus(source)
    if list(corpus.labels) != trained.recipe.label_names:
        raise ValueError(f"corpus {source!r} has labels {list(corpus.labels)}, the model was "
                         f"trained on {trained.recipe.label_names}")
    if split == "all":
        utterances = list(corpus)
    elif split == "test":
        if "protocol" not in run:
            raise ValueError(f"checkpoint {path} holds no training split; use split='all'")
        seed = trained.checkpoint["train_config"]["seed"]
        utterances = list(pick_split(corpus, run["protocol"], run["fold"], seed).test)
    else:
        raise ValueError(f"split must be 'test' or 'all', got {split!r}")
    items = trained.recipe.featurize(utterances)
    return evaluate(trained.recipe, trained.model, items, batch_size=batch_size)
