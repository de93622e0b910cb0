"""``fastser demo``: the synthetic corpus, every method trained on it with held-out voices,
evaluated, exported to TorchScript, timed fused vs naive; one table."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from fastser.bench.training_step import step_speedup
from fastser.data.protocols import speaker_split
from fastser.data.synthetic import load_synthetic
from fastser.export import export_torchscript
from fastser.ops import library_path
from fastser.train.evaluation import evaluate
from fastser.train.recipes import recipe_class
from fastser.train.run import TrainedModel
from fastser.train.trainer import TrainConfig, Trainer

DEMO_MODELS = ("glrf", "sap", "mmtl", "mstr", "can")
UA_BAR = 0.6


def _train_one(name: str, corpus, split, out_dir: Path, seed: int, quick: bool,
               log: Callable[[str], None]) -> dict[str, Any]:
    cls = recipe_class(name)
    recipe = cls(corpus.labels, **cls.demo_config)
    settings = {**cls.demo_train, "seed": seed, "device": "cpu", "progress": False}
    if quick:
        settings["epochs"] = 1
    config = TrainConfig(**settings)
    started = time.perf_counter()
    train = recipe.featurize(list(split.train))
    val = recipe.featurize(list(split.validation)) or None
    test = recipe.featurize(list(split.test))
    fit = Trainer(recipe, config, out_dir / name).fit(train, val)
    train_seconds = time.perf_counter() - started
    result = evaluate(recipe, fit.model, test, batch_size=config.eval_batch_size)
    export_torchscript(TrainedModel(recipe, fit.model, {}), out_dir / name / "model.ts")
    speed = step_speedup(recipe, train, config.batch_size, min_time=0.2 if quick else 0.5)
    log(f"{name}: UA {result['ua']:.3f}  WA {result['wa']:.3f}  macro-F1 "
        f"{result['macro_f1']:.3f}  ({train_seconds:.0f} s)  step speed-up "
        f"{speed['speedup']:.2f}x")
    return {"model": name, "ua": result["ua"], "wa": result["wa"], "f1": result["macro_f1"],
            "train_seconds": train_seconds, "epochs": len(fit.history),
            "step_speedup": speed["speedup"], "fused_step_s": speed["fused_s"],
            "naive_step_s": speed["naive_s"], "export": str(out_dir / name / "model.ts")}


def check_exports_in_fresh_process(rows: Sequence[dict[str, Any]]) -> None:
    """Every exported file loads and runs in a new process that registers fastser's ops from
    the shared library alone (no ``import fastser``)."""
    code = textwrap.dedent(f"""
        import json, sys, torch
        torch.ops.load_library({library_path()!r})
        for path in {[r['export'] for r in rows]!r}:
            extra = {{"fastser.json": ""}}
            module = torch.jit.load(path, _extra_files=extra)
            assert json.loads(extra["fastser.json"])["labels"]
        assert "fastser" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"an exported TorchScript file failed to load without fastser:\n"
                           f"{proc.stderr}")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("model", "UA", "WA", "F1", "train s", "fused-vs-naive step")
    body = [(r["model"], f"{r['ua']:.3f}", f"{r['wa']:.3f}", f"{r['f1']:.3f}",
             f"{r['train_seconds']:.0f}", f"{r['step_speedup']:.2f}x") for r in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def run_demo(out_dir: str | Path, *, models: Sequence[str] = DEMO_MODELS, seed: int = 0,
             quick: bool = False, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train, evaluate, export and time every model in ``models``; print and return the table.
    ``quick``: a small corpus and one epoch (a smoke run; accuracies are meaningless)."""
    out_dir = Path(out_dir)
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
    log("\n" + table + f"\n\ntotal {total:.0f} s; every model exported to TorchScript and "
        "reloaded in a process without fastser's Python package")
    (out_dir / "demo.json").write_text(json.dumps({"rows": rows, "seconds": total}, indent=2))
    (out_dir / "demo.md").write_text(table + "\n")
    if not quick:
        below = [r["model"] for r in rows if r["ua"] < UA_BAR]
        if below:
            log(f"WARNING: UA below {UA_BAR} for {', '.join(below)}")
    return rows
