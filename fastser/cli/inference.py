"""``fastser predict`` and ``export``: using a trained checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastser.cli._common import CommandError


def _predict(args: argparse.Namespace) -> int:
    from fastser.inference.recognizer import Recognizer

    words = _read_words(args.words) if args.words else None
    if words is not None and len(args.files) != 1:
        raise CommandError("--words belongs to one recording: pass exactly one FILE with it")
    recognizer = Recognizer.from_checkpoint(args.checkpoint, device=args.device or "cpu",
                                            amp=args.amp, compile=args.compile)
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="emotion of audio files",
                       description="Label, per-class scores and (segment models) the "
                                   "per-segment timeline of each FILE.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--words", help="word timings for the audio-text model: a .wdseg file or a "
                                   "JSON list of [word, start, end]")
    p.add_argument("--device")
    p.add_argument("--amp", default="off", choices=("auto", "off", "bf16"),
                   help="mixed precision (default off; auto: bf16 on GPUs and on CPUs with "
                        "AMX-BF16 or AVX512-BF16)")
    p.add_argument("--compile", action="store_true", help="run the model under torch.compile")
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
