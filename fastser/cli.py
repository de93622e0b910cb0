"""The ``fastser`` command: train, eval, cv, predict, export, bench, info, settings, demo, synth.

A user's mistake (a :class:`fastser.errors.UserError`: bad path, option, setting, audio,
corpus or checkpoint) is printed in one line with exit status 2; any other exception is a bug
in fastser and keeps its traceback (exit status 1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from fastser.errors import UserError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_fraction", "grad_clip",
                 "amp", "seed", "patience", "device")


class CommandError(UserError):
    """A bad command-line option or combination of options."""


# ---------------------------------------------------------------------------- helpers

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


def _print_metrics(result: dict[str, Any], labels: list[str] | None = None) -> None:
    for key in ("ua", "wa", "micro_f1", "macro_f1", "weighted_f1", "pure_accuracy"):
        if key in result:
            print(f"  {key:<14} {result[key]:.4f}")


# ---------------------------------------------------------------------------- commands

def _info(args: argparse.Namespace) -> int:
    import fastser

    if args.json:
        print(json.dumps(fastser.build_config(), indent=2))
    else:
        fastser.show_config()
    return 0


def _bench(args: argparse.Namespace) -> int:
    from fastser.bench import report

    known = report.available_suites()
    suites = args.suite or known
    unknown = [s for s in suites if s not in known]
    if unknown:
        raise CommandError(f"unknown suite(s) {', '.join(unknown)}; known: "
                           f"{', '.join(known) or 'none'}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda asked for, but no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = report.run(suites, device, DTYPES[args.dtype], quick=args.quick,
                        min_time=args.min_time)
    if args.json:
        report.write_json(result, args.json)
        print(f"\nwrote {args.json}")
    return 0


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
        _print_metrics(run.result.test)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from fastser.workflows.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data, split=args.split,
                                 device=args.device or "cpu")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.checkpoint} ({args.split} utterances):")
        _print_metrics(result)
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


def _predict(args: argparse.Namespace) -> int:
    from fastser.inference.recognizer import Recognizer

    words = _read_words(args.words) if args.words else None
    if words is not None and len(args.files) != 1:
        raise CommandError("--words belongs to one recording: pass exactly one FILE with it")
    recognizer = Recognizer.from_checkpoint(args.checkpoint, device=args.device or "cpu")
    results = {}
    for path in args.files:
        recognition = recognizer.predict(path, words=words)
        results[path] = recognition.to_dict()
        if args.json:
            continue
        scores = ", ".join(f"{k} {v:.2f}" for k, v in
                           sorted(recognition.scores.items(), key=lambda kv: -kv[1]))
        print(f"{path}: {recognition.label} ({scores})")
        for seg in recognition.segments:
            print(f"  {seg.start:6.2f}-{seg.end:6.2f} s  {seg.label:<10} "
                  f"{seg.scores[seg.label]:.2f}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _read_words(path: str):
    """Word timings from a JSON list of [word, start, end] or an IEMOCAP .wdseg file."""
    from fastser.audio.alignment import WordTiming
    from fastser.data.iemocap import read_wdseg

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"--words: {file} does not exist")
    if file.suffix == ".wdseg":
        return list(read_wdseg(file))
    try:
        return [WordTiming(str(w), float(s), float(e)) for w, s, e in json.loads(file.read_text())]
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise CommandError(f"--words: {file} is neither a .wdseg file nor a JSON list of "
                           f"[word, start, end]: {error}") from error


def _export(args: argparse.Namespace) -> int:
    from fastser.inference.checkpoint import load_trained
    from fastser.inference.export import export_program, export_torchscript

    out = Path(args.out)
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to replace it")
    trained = load_trained(args.checkpoint)
    if args.format == "torchscript":
        export_torchscript(trained, out)
    else:
        export_program(trained, out)
    print(f"wrote {out} ({args.format}, {trained.recipe.name}, labels "
          f"{', '.join(trained.recipe.label_names)})")
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


def _demo(args: argparse.Namespace) -> int:
    from fastser.workflows.demo import DEMO_MODELS, run_demo

    models = args.models.split(",") if args.models else list(DEMO_MODELS)
    unknown = [m for m in models if m not in DEMO_MODELS]
    if unknown:
        raise CommandError(f"--models: unknown {', '.join(unknown)}; choose from "
                           f"{', '.join(DEMO_MODELS)}")
    run_demo(args.out, models=models, seed=args.seed, quick=args.quick)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from fastser.data.synthetic import write_synthetic

    corpus = write_synthetic(args.out, utterances=args.utterances, speakers=args.speakers,
                             seed=args.seed)
    print(f"wrote {len(corpus)} utterances to {args.out} (read it back with "
          f"--data synthetic:{args.out})")
    return 0


# ---------------------------------------------------------------------------- parser

def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=_method_names(), help="the method")
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
                   help="mixed precision (auto: bf16 on GPU, off on CPU)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting (repeatable), e.g. --set k=0.7; `fastser settings "
                        "MODEL` lists them")
    p.add_argument("--preset", metavar="NAME",
                   help="start from one of the method's presets (settings and training "
                        "options), e.g. demo")
    p.add_argument("--demo-settings", action="store_true", help="the same as --preset demo")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastser",
        description="Speech emotion recognition on fused C++/CUDA PyTorch operators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    p = sub.add_parser("predict", help="emotion of audio files",
                       description="Label, per-class scores and (segment models) the "
                                   "per-segment timeline of each FILE.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--words", help="word timings for the audio-text model: a .wdseg file or a "
                                   "JSON list of [word, start, end]")
    p.add_argument("--device")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_predict)

    p = sub.add_parser("export", help="TorchScript or torch.export file of a checkpoint",
                       description="The TorchScript file runs in a process that only loads "
                                   "fastser's shared library (torch.ops.load_library) and it.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--format", default="torchscript", choices=("torchscript", "export"))
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(handler=_export)

    p = sub.add_parser("bench", help="fused vs naive speed and memory tables",
                       description="Time the fused ops and models against their naive PyTorch "
                                   "versions, forward and forward+backward, with peak memory "
                                   "and speed-up ratios.")
    p.add_argument("--suite", action="append", metavar="NAME",
                   help="suite to run (repeatable; default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--min-time", type=float, default=0.3,
                   help="seconds of repeated calls per measurement (default 0.3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.set_defaults(handler=_bench)

    p = sub.add_parser("info", help="versions, compiled backends and threads",
                       description="Show what this fastser installation contains.")
    p.add_argument("--json", action="store_true", help="print the configuration as JSON")
    p.set_defaults(handler=_info)

    p = sub.add_parser("settings", help="a method's settings, their defaults and presets",
                       description="Every setting of a method (the keys of --set) with its "
                                   "type, default and accepted values, and its presets.")
    p.add_argument("model", choices=_method_names(), help="the method")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_settings)

    p = sub.add_parser("demo", help="train, evaluate, export and time all five methods",
                       description="Build the synthetic corpus, train each method with "
                                   "held-out voices, evaluate, export to TorchScript, time "
                                   "fused vs reference training steps, print one table.")
    p.add_argument("--out", default="fastser-demo", help="output folder (default fastser-demo)")
    p.add_argument("--models", help="comma-separated subset of glrf,sap,mmtl,mstr,can")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small corpus, one epoch (smoke run)")
    p.set_defaults(handler=_demo)

    p = sub.add_parser("synth", help="write the synthetic corpus to a folder",
                       description="Generate the synthetic acted-emotion corpus (eSpeak NG "
                                   "speech) into an empty folder: wav/ and manifest.json.")
    p.add_argument("--out", required=True)
    p.add_argument("--utterances", type=int, default=480)
    p.add_argument("--speakers", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_synth)
    return parser


def _method_names() -> list[str]:
    from fastser.methods import method_names

    return method_names()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"fastser {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
