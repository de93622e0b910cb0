"""``fastser train``, ``cv``, ``eval`` and ``settings``: training runs and method settings.
``fastser cv --model all`` (or a comma-separated list of methods) is the leaderboard."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fastser.cli._common import (CommandError, add_checkpoint_options, add_data_options,
                                 checkpoint_options, data_options, key_value_pairs,
                                 method_names, print_metrics)


def _method_settings(recipe_cls, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """--set pairs, each value parsed and checked by the method's settings."""
    return {key: recipe_cls.Settings.parse(recipe_cls.name, key, value) for key, value in pairs}


def _train_config(args: argparse.Namespace, model: str | None = None,
                  pairs: list[tuple[str, str]] | None = None, *, preset_required: bool = True):
    """(TrainConfig, method settings) of ``model`` (default: --model) from the preset (if any;
    a method without it starts from its defaults unless ``preset_required``) or else the
    method's training defaults, the options and ``pairs`` (default: --set)."""
    from fastser.methods import recipe_class
    from fastser.train.trainer import COMMAND_LINE_OPTIONS, TrainConfig

    model = args.model if model is None else model
    pairs = key_value_pairs(args.set) if pairs is None else pairs
    cls = recipe_class(model)
    preset_name = "demo" if args.demo_settings else args.preset
    if preset_required and preset_name is not None and preset_name not in cls.presets:
        raise CommandError(f"--preset {preset_name}: {model} has the presets "
                           f"{', '.join(sorted(cls.presets)) or 'none'}")
    preset = cls.presets.get(preset_name) if preset_name else None
    training = dict(preset.training if preset else cls.training_defaults)
    training.update({k: getattr(args, k) for k in COMMAND_LINE_OPTIONS
                     if getattr(args, k) is not None})
    training["progress"] = not args.no_progress
    settings = dict(preset.settings) if preset else {}
    settings.update(_method_settings(cls, pairs))
    cls.Settings.build(cls.name, settings)  # every setting checked before any work
    return TrainConfig(**training), settings


def _models(text: str) -> list[str]:
    """--model of cv: one method, a comma-separated list, or "all"."""
    names = method_names()
    models = names if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in names]
    if unknown or not models:
        named = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(f"unknown model(s) {named}; "
                                         f"choose from {', '.join(names)}, a comma-separated "
                                         "list of them, or all")
    return models


def _leaderboard_settings(models: list[str], pairs: list[tuple[str, str]]
                          ) -> dict[str, list[tuple[str, str]]]:
    """The --set pairs of each method: MODEL.KEY=VALUE for one method, KEY=VALUE for every
    method that has the setting (at least one must)."""
    from fastser.methods import recipe_class

    per_method: dict[str, list[tuple[str, str]]] = {m: [] for m in models}
    for key, value in pairs:
        model, dot, name = key.partition(".")
        if dot and model in per_method:
            per_method[model].append((name, value))
            continue
        if dot:
            raise CommandError(f"--set {key}=...: {model!r} is not one of the methods run "
                               f"({', '.join(models)})")
        having = [m for m in models if key in recipe_class(m).Settings.fields()]
        if not having:
            raise CommandError(f"--set {key}=...: none of {', '.join(models)} has a setting "
                               f"{key} (`fastser settings MODEL` lists them)")
        for m in having:
            per_method[m].append((key, value))
    return per_method


def _protocol(args: argparse.Namespace, default: str) -> str:
    """--protocol, which a fold file (--folds) replaces."""
    if args.folds is not None and args.protocol is not None:
        raise CommandError("--folds gives the splits: pass either --folds or --protocol")
    return args.protocol or default


def _train(args: argparse.Namespace) -> int:
    from fastser.distributed import shutdown_distributed
    from fastser.workflows.pipeline import train_model

    config, settings = _train_config(args)
    protocol = _protocol(args, "random")
    try:
        run = train_model(args.model, data_options(args), args.out, config, settings=settings,
                          protocol=protocol, fold=args.fold, resume=args.resume,
                          force=args.force, num_folds=args.num_folds)
    finally:
        shutdown_distributed()
    if run.result.test:
        held_out = ("test utterances held out (speaker-dependent: their speakers also train)"
                    if run.result.speaker_dependent else "test speakers held out")
        print(f"{args.model} on {args.data}: {held_out}; results in {args.out}")
        print_metrics(run.result.test)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from fastser.workflows.evaluate import evaluate_checkpoint

    if args.data is None and (args.labels or args.label_map or args.data_option):
        raise CommandError("--labels, --label-map and --data-option apply to --data; without "
                           "--data the run's own data, reader options and classes are used")
    data = data_options(args) if args.data is not None else None
    result = evaluate_checkpoint(args.checkpoint, data, split=args.split,
                                 device=args.device or "cpu", **checkpoint_options(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.checkpoint} ({args.split} utterances):")
        print_metrics(result)
    return 0


def _cv(args: argparse.Namespace) -> int:
    from fastser.data.protocols import check_protocol
    from fastser.methods import make_recipe
    from fastser.workflows.cv import parse_seeds, run_cv, run_seeds

    protocol = _protocol(args, "session")
    if args.folds is None:
        check_protocol(protocol)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if seeds is not None and args.seed is not None:
        raise CommandError("--seed and --seeds: give one of them")
    if len(args.model) > 1:
        return _leaderboard(args, protocol, seeds)
    model = args.model[0]
    config, settings = _train_config(args, model)
    out = Path(args.out)
    data = data_options(args)
    corpus = data.open()
    recipe = lambda labels: make_recipe(model, labels, **settings)  # noqa: E731
    common = dict(data=data, num_folds=args.num_folds, force=args.force)
    how = data.describe_splits(protocol)
    if seeds is None:
        result = run_cv(recipe, corpus, protocol, config, out, **common)
        print(f"\n{how} cross-validation of {model} on {args.data}, "
              f"{len(result.folds)} folds (tables and confusion matrices in {out}):")
        dependent = any(f["speaker_dependent"] for f in result.folds)
    else:
        result = run_seeds(recipe, corpus, protocol, config, out, seeds, **common)
        print(f"\n{how} cross-validation of {model} on {args.data}, mean of "
              f"{len(seeds)} seeds ± 95% CI over seeds (tables in {out}):")
        dependent = any(f["speaker_dependent"] for run in result.runs.values()
                        for f in run.folds)
    if dependent:
        print("  (speaker-dependent: the folds share speakers between training and test)")
    for name, stat in result.summary.items():
        print(f"  {name:<16} {stat['mean']:.4f} ± {stat['ci95']:.4f}")
    return 0


def _leaderboard(args: argparse.Namespace, protocol: str, seeds: list[int] | None) -> int:
    from fastser.workflows.leaderboard import format_table, leaderboard_title, run_leaderboard

    pairs = _leaderboard_settings(args.model, key_value_pairs(args.set))
    configs, settings = {}, {}
    for model in args.model:
        configs[model], settings[model] = _train_config(args, model, pairs[model],
                                                        preset_required=False)
    out = Path(args.out)
    if (out / "leaderboard.json").exists() and not args.force:
        raise CommandError(f"{out} already holds a leaderboard (leaderboard.json); choose "
                           "another --out or pass --force (nothing was overwritten)")
    data = data_options(args)
    entries = run_leaderboard(args.model, data.open(), protocol, configs, settings, out,
                              data=data, num_folds=args.num_folds, seeds=seeds)
    print("\n" + format_table(entries, leaderboard_title(data.describe_splits(protocol),
                                                          args.data, seeds)))
    print(f"tables, plot and each method's folds in {out}")
    return 0


def _settings(args: argparse.Namespace) -> int:
    from fastser.methods import recipe_class

    cls = recipe_class(args.model)
    rows = cls.Settings.describe()
    if args.json:
        print(json.dumps({"settings": [dict(zip(("name", "type", "default", "description"), r))
                                       for r in rows],
                          "training_defaults": dict(cls.training_defaults),
                          "presets": {name: {"doc": p.doc, "settings": dict(p.settings),
                                             "training": dict(p.training)}
                                      for name, p in cls.presets.items()}}, indent=2))
        return 0
    print(f"{cls.name} settings (--set KEY=VALUE):")
    width = max(len(name) for name, *_ in rows)
    for name, kind, default, doc in rows:
        print(f"  {name:<{width}}  {default:<12} {kind}: {doc}")
    if cls.training_defaults:
        print("training defaults (without a preset): " + ", ".join(
            f"{k}={v}" for k, v in cls.training_defaults.items()))
    for name, preset in cls.presets.items():
        changes = ", ".join(f"{k}={v}" for k, v in {**preset.settings, **preset.training}.items())
        print(f"preset {name} ({preset.doc}): {changes}")
    return 0


def _clip(text: str) -> float | str:
    """--grad-clip: a number (its range checked by TrainConfig) or "off"."""
    if text == "off":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or off, got {text!r}") from None


def _add_training_options(p: argparse.ArgumentParser, *, several: bool = False) -> None:
    if several:
        p.add_argument("--model", required=True, type=_models, metavar="MODEL",
                       help="a method, a comma-separated list of methods or all: several give "
                            "one leaderboard of every method that can run on the corpus "
                            f"(methods: {', '.join(method_names())})")
    else:
        p.add_argument("--model", required=True, choices=method_names(), help="the method")
    add_data_options(p, folds=True)
    p.add_argument("--num-folds", dest="num_folds", type=int,
                   help="folds of the utterance-kfold protocols (default 5 for "
                        "utterance-kfold, 10 for utterance-kfold-val)")
    p.add_argument("--out", required=True, help="output folder (holds one run)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier run's outputs in --out (with --resume: continue "
                        "despite safe differences, such as more epochs)")
    p.add_argument("--seed", type=int, help="seed of the split, initialisation and batches")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", dest="weight_decay", type=float)
    p.add_argument("--warmup-fraction", dest="warmup_fraction", type=float)
    p.add_argument("--grad-clip", dest="grad_clip", type=_clip, metavar="NORM|off",
                   help="clip the gradient norm to NORM (> 0), or off")
    p.add_argument("--optimizer", help="adamw (decoupled weight decay) or adam (default adamw)")
    p.add_argument("--schedule", help="learning rate after the warm-up: warmup_cosine (cosine "
                                      "decay) or constant (default warmup_cosine)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better "
                                                "validation --monitor")
    p.add_argument("--monitor",
                   help="validation metric (ua, wa, micro_f1, macro_f1, weighted_f1, ccc: the "
                        "mean CCC of affect targets) or loss, that picks the best epoch "
                        "(--select best) and drives early stopping (default auto: ua, or ccc "
                        "for affect-only models; loss: the method's loss on the validation "
                        "utterances, lower is better)")
    p.add_argument("--select",
                   help="the final model: best (validation epoch by --monitor; default), last "
                        "(epoch) or average (of the last --average-epochs epochs' weights)")
    p.add_argument("--average-epochs", dest="average_epochs", type=int,
                   help="epochs whose weights --select average averages (default 5)")
    p.add_argument("--class-balance", dest="class_balance",
                   help="none or sampler: draw training batches class-balanced (default none)")
    p.add_argument("--validation-speakers", dest="validation_speakers", type=int,
                   help="validation speakers drawn from each fold's training speakers "
                        "(session and speaker protocols; default 1, 0: none)")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision (auto: bf16 on GPUs and on CPUs with AMX-BF16 or "
                        "AVX512-BF16, see `fastser info`; float32 elsewhere)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="train the model under torch.compile (off by default: on the CPU "
                        "its compile time outweighs the step time saved, bench/RESULTS.md)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting (repeatable), e.g. --set k=0.7; `fastser settings "
                        "MODEL` lists them" + ("; with several methods, MODEL.KEY=VALUE sets "
                                               "one method's" if several else ""))
    p.add_argument("--preset", metavar="NAME",
                   help="start from one of the method's presets (settings and training "
                        "options), e.g. demo")
    p.add_argument("--demo-settings", action="store_true", help="the same as --preset demo")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


PROTOCOL_HELP = ("session (leave one session out), speaker (leave one speaker out), random "
                 "(one random speaker split), session-speaker (MMTL's: leave one session out, "
                 "one of its speakers validates, the other is tested), utterance-kfold / "
                 "utterance-kfold-val (random utterance folds without / with a validation "
                 "fold: speaker-dependent)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model, early-stop on validation voices, test on "
                                     "held-out voices",
                       description="Train one method on a speaker-independent split. Run under "
                                   "`torchrun --nproc_per_node=N -m fastser train ...` for "
                                   "DistributedDataParallel.")
    _add_training_options(p)
    p.add_argument("--protocol",
                   help=f"split: {PROTOCOL_HELP}; train runs one fold (default random)")
    p.add_argument("--fold", type=int, default=1,
                   help="fold of --protocol or --folds (default 1)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.set_defaults(handler=_train)

    p = sub.add_parser("eval", help="metrics of a checkpoint",
                       description="Evaluate a checkpoint on its run's held-out speakers "
                                   "(--split test) or on a whole corpus (--split all).")
    p.add_argument("--checkpoint", required=True)
    add_data_options(p, default=None)
    p.add_argument("--split", default="test", choices=("test", "all"))
    p.add_argument("--device")
    p.add_argument("--json", action="store_true")
    add_checkpoint_options(p)
    p.set_defaults(handler=_eval)

    p = sub.add_parser("cv", help="cross-validation over a protocol",
                       description="One model per fold of a protocol or of official folds "
                                   "(--folds); per-fold and mean ± 95% CI of WA, UA, F1 (and "
                                   "pure accuracy), of CCC, Pearson's r and MAE for affect "
                                   "targets; confusion matrices. With several "
                                   "methods (--model all): one cross-validation each and a "
                                   "leaderboard (Markdown, CSV, plot); methods that cannot run "
                                   "on the corpus are skipped with the reason.")
    _add_training_options(p, several=True)
    p.add_argument("--protocol", help=f"{PROTOCOL_HELP} (default session)")
    p.add_argument("--seeds", metavar="SEEDS",
                   help="repeat the cross-validation for each seed and average, e.g. 0-9 or "
                        "0,1,2 (instead of --seed); with several methods, for each of them")
    p.set_defaults(handler=_cv)

    p = sub.add_parser("settings", help="a method's settings, their defaults and presets",
                       description="Every setting of a method (the keys of --set) with its "
                                   "type, default and accepted values, and its presets.")
    p.add_argument("model", choices=method_names(), help="the method")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_settings)
