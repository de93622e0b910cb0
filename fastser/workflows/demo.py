"""``fastser demo``: the synthetic corpus, every method trained on it with held-out voices,
evaluated through the train-then-test pipeline, exported to TorchScript, its training step
timed fused vs reference; one table."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Sequence


from fastser.bench.training_step import step_speedup
from fastser.data.protocols import speaker_split
from fastser.data.synthetic import load_synthetic
from fastser.inference.checkpoint import TrainedModel
from fastser.inference.export import export_torchscript
from fastser.methods import recipe_class
from fastser.ops import _library, library_path
from fastser.outputs import write_json, write_text
from fastser.train.trainer import TrainConfig
from fastser.workflows.pipeline import featurize_split, run_fold
from fastser.workflows.run_folder import claim

DEMO_MODELS = ("glrf", "sap", "mmtl", "mstr", "can")
UA_BAR = 0.6


def _train_one(name: str, corpus, split, out_dir: Path, seed: int, quick: bool,
               log: Callable[[str], None]) -> dict[str, Any]:
    """One method through the train-then-test pipeline with its demo preset, exported to
    TorchScript and timed fused vs reference: its results.json plus the demo's columns."""
    cls = recipe_class(name)
    preset = cls.presets["demo"]
    recipe = cls(corpus.labels, **preset.settings)
    training = {**preset.training, "seed": seed, "device": "cpu", "progress": False}
    if quick:
        training["epochs"] = 1
    config = TrainConfig(**training)
    started = time.perf_counter()
    items = featurize_split(recipe, split)
    run = run_fold(recipe, items, split, config, out_dir / name, data="synthetic",
                   protocol="random", fold=1)
    train_seconds = time.perf_counter() - started
    test = run.result.test
    export_torchscript(TrainedModel(recipe, run.fit.model, {}), out_dir / name / "model.ts")
    speed = step_speedup(recipe, [items[u.id] for u in split.train], config.batch_size,
                         min_time=0.2 if quick else 0.5)
    log(f"{name}: UA {test['ua']:.3f}  WA {test['wa']:.3f}  macro-F1 "
        f"{test['macro_f1']:.3f}  ({train_seconds:.0f} s)  step speed-up "
        f"{speed['speedup']:.2f}x")
    return {**run.result.to_dict(), "featurize_and_train_seconds": train_seconds,
            "step_speedup": speed["speedup"], "fused_step_s": speed["fused_s"],
            "reference_step_s": speed["reference_s"],
            "export": str(out_dir / name / "model.ts")}


def check_exports_in_fresh_process(rows: Sequence[dict[str, Any]]) -> None:
    """Every exported file loads and runs in a new process that registers fastser's ops from
    the shared library alone (no ``import fastser``; with the reference backend, which has no
    library, by importing fastser)."""
    reference = _library.BACKEND == "reference"
    load = "import fastser" if reference else f"torch.ops.load_library({library_path()!r})"
    code = textwrap.dedent(f"""
        import json, sys, torch
        {load}
        for path in {[r['export'] for r in rows]!r}:
            extra = {{"fastser.json": ""}}
            module = torch.jit.load(path, _extra_files=extra)
            assert json.loads(extra["fastser.json"])["labels"]
        assert ("fastser" in sys.modules) == {reference}
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"an exported TorchScript file failed to load without fastser:\n"
                           f"{proc.stderr}")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("model", "UA", "WA", "F1", "train s", "fused-vs-reference step")
    body = [(r["model"], f"{r['test']['ua']:.3f}", f"{r['test']['wa']:.3f}",
             f"{r['test']['macro_f1']:.3f}", f"{r['featurize_and_train_seconds']:.0f}",
             f"{r['step_speedup']:.2f}x") for r in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def run_demo(out_dir: str | Path, *, models: Sequence[str] = DEMO_MODELS, seed: int = 0,
             quick: bool = False, force: bool = False,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train, evaluate, export and time every model in ``models``; print and return the table.
    ``quick``: a small corpus and one epoch (a smoke run; accuracies are meaningless). The run
    folder is claimed first: an earlier demo there is refused unless ``force`` replaces it."""
    with claim(out_dir, force=force, parts=DEMO_MODELS):
        return _run_demo(Path(out_dir), models, seed, quick, log)


def _run_demo(out_dir: Path, models: Sequence[str], seed: int, quick: bool,
              log: Callable[[str], None]) -> list[dict[str, Any]]:
    started = time.perf_counter()
    corpus = load_synthetic(utterances=80, speakers=4) if quick else load_synthetic()
    log(f"synthetic corpus: {len(corpus)} utterances, {len(corpus.speakers)} voices "
        f"({time.perf_counter() - started:.1f} s)")
    split = speaker_split(corpus, seed=seed)
    log(f"held-out test voices: {', '.join(sorted({u.speaker for u in split.test}))}")
    rows = [_train_one(name, corpus, split, out_dir, seed, quick, log) for name in models]
    check_exports_in_fresh_process(rows)
    table = format_table(rows)
    total = time.perf_counter() - started
    where = ("a new process (fastser's reference ops: no compiled library to load alone)"
             if _library.BACKEND == "reference" else
             "a process without fastser's Python package")
    log("\n" + table + f"\n\ntotal {total:.0f} s; every model exported to TorchScript and "
        f"reloaded in {where}")
    write_json(out_dir / "demo.json", {"rows": rows, "seconds": total})
    write_text(out_dir / "demo.md", table + "\n")
    if not quick:
        below = [r["model"] for r in rows if r["test"]["ua"] < UA_BAR]
        if below:
            log(f"WARNING: UA below {UA_BAR} for {', '.join(below)}")
    return rows
