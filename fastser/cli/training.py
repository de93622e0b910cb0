"""``fastser train``, ``cv``, ``eval`` and ``settings``: training runs and method settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fastser.cli._common import CommandError, method_names, print_metrics

TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_fraction", "grad_clip",
                 "amp", "compile", "seed", "patience", "device")


def _method_settings(recipe_cls, pairs: list[str] | None) -> dict[str, Any]:
    """--set KEY=VALUE pairs, each value parsed and checked by the method's settings."""
    settings: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--set expects KEY=VALUE, got {pair!r}")
        settings[key] = recipe_cls.Settings.parse(recipe_cls.name, key, value)
    return settings


def _train_config(args: argparse.Namespace):
    """(TrainConfig, method settings) from the preset (if any), the options and --set."""
    from fastser.methods import recipe_class
    from fastser.train.trainer import TrainConfig

    cls = recipe_class(args.model)
    preset_name = "demo" if args.demo_settings else args.preset
    if preset_name is not None and preset_name not in cls.presets:
        raise CommandError(f"--preset {preset_name}: {args.model} has the presets "
                           f"{', '.join(sorted(cls.presets)) or 'none'}")
    preset = cls.presets.get(preset_name) if preset_name else None
    training: dict[str, Any] = dict(preset.training) if preset else {}
    training.update({k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None})
    training["progress"] = not args.no_progress
    settings = dict(preset.settings) if preset else {}
    settings.update(_method_settings(cls, args.set))
    cls.Settings.build(cls.name, settings)  # every setting checked before any work
    return TrainConfig(**training), settings


def _fresh_out_dir(path: str, resume: bool) -> Path:
    out = Path(path)
    if not resume and (out / "last.pt").exists():
        raise CommandError(f"{out} already holds a training run (last.pt); pass --resume to "
                           "continue it or choose another --out (nothing was overwritten)")
    if resume and not (out / "last.pt").exists():
        raise CommandError(f"--resume: {out} holds no last.pt to continue from")
    return out


def _train(args: argparse.Namespace) -> int:
    from fastser.train.distributed import shutdown_distributed
    from fastser.workflows.pipeline import train_model

    config, settings = _train_config(args)
    out = _fresh_out_dir(args.out, args.resume)
    try:
        run = train_model(args.model, args.data, out, config, settings=settings,
                          protocol=args.protocol, fold=args.fold, resume=args.resume)
    finally:
        shutdown_distributed()
    if run.result.test:
        print(f"{args.model} on {args.data}: test speakers held out; results in {out}")
        print_metrics(run.result.test)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from fastser.workflows.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data, split=args.split,
                                 device=args.device or "cpu")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.checkpoint} ({args.split} utterances):")
        print_metrics(result)
    return 0


def _cv(args: argparse.Namespace) -> int:
    from fastser.data.sources import open_corpus
    from fastser.methods import make_recipe
    from fastser.workflows.cv import run_cv

    config, settings = _train_config(args)
    out = Path(args.out)
    if (out / "cv.json").exists():
        raise CommandError(f"{out} already holds a cross-validation (cv.json); choose another "
                           "--out (nothing was overwritten)")
    corpus = open_corpus(args.data)
    result = run_cv(lambda labels: make_recipe(args.model, labels, **settings), corpus,
                    args.protocol, config, out, data=args.data)
    print(f"\n{args.protocol} cross-validation of {args.model} on {args.data}, "
          f"{len(result.folds)} folds (tables and confusion matrices in {out}):")
    for name, stat in result.summary.items():
        print(f"  {name:<14} {stat['mean']:.4f} ± {stat['ci95']:.4f}")
    return 0


def _settings(args: argparse.Namespace) -> int:
    from fastser.methods import recipe_class

    cls = recipe_class(args.model)
    rows = cls.Settings.describe()
    if args.json:
        print(json.dumps({"settings": [dict(zip(("name", "type", "default", "description"), r))
                                       for r in rows],
                          "presets": {name: {"doc": p.doc, "settings": dict(p.settings),
                                             "training": dict(p.training)}
                                      for name, p in cls.presets.items()}}, indent=2))
        return 0
    print(f"{cls.name} settings (--set KEY=VALUE):")
    width = max(len(name) for name, *_ in rows)
    for name, kind, default, doc in rows:
        print(f"  {name:<{width}}  {default:<12} {kind}: {doc}")
    for name, preset in cls.presets.items():
        changes = ", ".join(f"{k}={v}" for k, v in {**preset.settings, **preset.training}.items())
        print(f"preset {name} ({preset.doc}): {changes}")
    return 0


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=method_names(), help="the method")
    p.add_argument("--data", default="synthetic",
                   help="synthetic, synthetic:PATH, iemocap:PATH, crema-d:PATH, ravdess:PATH "
                        "or emodb:PATH (default: synthetic)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, help="seed of the split, initialisation and batches")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", dest="weight_decay", type=float)
    p.add_argument("--warmup-fraction", dest="warmup_fraction", type=float)
    p.add_argument("--grad-clip", dest="grad_clip", type=float)
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better "
                                                "validation UA")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision (auto: bf16 on GPUs and on CPUs with AMX-BF16 or "
                        "AVX512-BF16, see `fastser info`; float32 elsewhere)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="train the model under torch.compile (off by default: on the CPU "
                        "its compile time outweighs the step time saved, bench/RESULTS.md)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting (repeatable), e.g. --set k=0.7; `fastser settings "
                        "MODEL` lists them")
    p.add_argument("--preset", metavar="NAME",
                   help="start from one of the method's presets (settings and training "
                        "options), e.g. demo")
    p.add_argument("--demo-settings", action="store_true", help="the same as --preset demo")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model, early-stop on validation voices, test on "
                                     "held-out voices",
                       description="Train one method on a speaker-independent split. Run under "
                                   "`torchrun --nproc_per_node=N -m fastser train ...` for "
                                   "DistributedDataParallel.")
    _add_training_options(p)
    p.add_argument("--protocol", default="random", choices=("random", "session", "speaker"),
                   help="split: random speaker split, or one fold of leave-one-session/"
                        "speaker-out (default random)")
    p.add_argument("--fold", type=int, default=1, help="fold of --protocol (default 1)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.set_defaults(handler=_train)

    p = sub.add_parser("eval", help="metrics of a checkpoint",
                       description="Evaluate a checkpoint on its run's held-out speakers "
                                   "(--split test) or on a whole corpus (--split all).")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="corpus source (default: the one the run trained on)")
    p.add_argument("--split", default="test", choices=("test", "all"))
    p.add_argument("--device")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("cv", help="cross-validation over a protocol",
                       description="One model per fold; per-fold and mean ± 95% CI of WA, UA, "
                                   "F1 (and pure accuracy), confusion matrices.")
    _add_training_options(p)
    p.add_argument("--protocol", default="session", choices=("session", "speaker", "random"),
                   help="leave-one-session-out (default), leave-one-speaker-out, or one "
                        "random speaker split")
    p.set_defaults(handler=_cv)

    p = sub.add_parser("settings", help="a method's settings, their defaults and presets",
                       description="Every setting of a method (the keys of --set) with its "
                                   "type, default and accepted values, and its presets.")
    p.add_argument("model", choices=method_names(), help="the method")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_settings)
