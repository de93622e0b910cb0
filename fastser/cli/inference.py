"""``fastser predict``, ``embed``, ``stream`` and ``export``: using a trained checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastser.cli._common import CommandError, add_checkpoint_options, checkpoint_options
from fastser.errors import PathExistsError, UserError

INPUTS_HELP = ("audio files, folders (searched recursively), manifests (.csv, .tsv, .jsonl, "
               ".json: an audio path column 'path' (or 'file', 'wav', 'audio', 'filename'), "
               "optional 'id', 'start', 'end'; the training manifests' format) or Kaldi "
               "wav.scp files")


def _read_words(path: str):
    """Word timings from a JSON list of [word, start, end] or an IEMOCAP .wdseg file."""
    from fastser.data.manifest import read_word_timings

    return list(read_word_timings(path))


def _bulk(args: argparse.Namespace, task: str, open_writer) -> int:
    """The run shared by predict and embed: inputs, model, shards under torchrun, writer."""
    import os

    from fastser.devices import resolve_device
    from fastser.distributed import init_distributed, shutdown_distributed
    from fastser.inference.bulk import run_bulk
    from fastser.inference.inputs import AUDIO_EXTENSIONS, list_inputs
    from fastser.inference.recognizer import Recognizer

    extensions = args.extensions.split(",") if args.extensions else AUDIO_EXTENSIONS
    inputs = list_inputs(args.inputs, extensions=extensions)
    words = _read_words(args.words) if args.words else None
    if words is not None and len(inputs) != 1:
        raise CommandError("--words belongs to one recording: pass exactly one input with it")
    device = resolve_device(args.device or "cpu", int(os.environ.get("LOCAL_RANK", "0")))
    dist = init_distributed(device)
    try:
        recognizer = Recognizer.from_checkpoint(args.checkpoint, device=device,
                                                window=args.window, hop=args.hop,
                                                amp=args.amp, compile=args.compile,
                                                **checkpoint_options(args))
        writer = open_writer(recognizer) if dist.is_main else None
        stats = run_bulk(recognizer, inputs, task, writer.write if writer else None,
                         dist=dist, batch_seconds=args.batch_seconds,
                         progress=not args.no_progress, words=words)
        if writer is not None:
            writer.close()
            if stats.all_failed:  # nothing to show for the run: an error, not a result
                raise UserError(stats.first_error if stats.files == 1 else
                                   f"none of the {stats.files} recordings could be processed; "
                                   f"the first: {stats.first_error}")
            print(stats.summary(), file=sys.stderr)
    finally:
        shutdown_distributed()
    return 0


def _predict(args: argparse.Namespace) -> int:
    from fastser.inference.writers import PredictionTable, TerminalPredictions

    if args.segments and not args.out:
        raise CommandError("--segments selects the rows of an --out table; the terminal "
                           "output shows the segments already")

    def open_writer(recognizer):
        if args.segments and recognizer.recipe.segment_settings is None:
            raise CommandError(f"--segments: {recognizer.recipe.name} scores whole utterances")
        if args.out:
            return PredictionTable(args.out, recognizer.labels, segments=args.segments,
                                   force=args.force, affect=recognizer.recipe.affect_targets)
        return TerminalPredictions(as_json=args.json)

    return _bulk(args, "predict", open_writer)


def _embed(args: argparse.Namespace) -> int:
    from fastser.inference.writers import EmbeddingFolder

    def open_writer(recognizer):
        folder = EmbeddingFolder(args.out, segments=args.segments, frames=args.frames,
                                 force=args.force)
        folder.check(recognizer.embedding_parts())
        return folder

    return _bulk(args, "embed", open_writer)


def _stream(args: argparse.Namespace) -> int:
    from fastser.audio.io import SAMPLE_RATE
    from fastser.inference.live import file_chunks, pcm_chunks, run_stream
    from fastser.inference.streaming import StreamingRecognizer

    if args.source == "-" and args.rate is None:
        raise CommandError("reading raw PCM from standard input: give its --rate (16000)")
    recognizer = StreamingRecognizer.from_checkpoint(args.checkpoint, script=False,
                                                     window=args.window, hop=args.hop,
                                                     amp=args.amp, **checkpoint_options(args))
    chunk = max(1, round(args.chunk_ms * SAMPLE_RATE / 1000))
    chunks = (pcm_chunks(sys.stdin.buffer, chunk, args.rate) if args.source == "-"
              else file_chunks(args.source, chunk))

    def show(segment) -> None:
        if args.json:
            print(json.dumps({"segment": segment.index, "start": segment.start,
                              "end": segment.end, "label": segment.label,
                              "scores": _scores(recognizer.labels, segment.probs),
                              "utterance_label": segment.utterance_label,
                              "utterance_scores": _scores(recognizer.labels,
                                                          segment.utterance_probs)}),
                  flush=True)
        else:
            print(f"{segment.start:7.2f}-{segment.end:7.2f} s  {segment.label:<10} "
                  f"{float(segment.probs.max()):.2f}   utterance so far: "
                  f"{segment.utterance_label} {float(segment.utterance_probs.max()):.2f}",
                  flush=True)

    final = run_stream(recognizer, chunks, show, realtime=args.realtime)
    scores = _scores(recognizer.labels, final.probs)
    if args.json:
        print(json.dumps({"label": final.label, "scores": scores,
                          "segments": len(final.segments)}))
    else:
        print(f"utterance: {final.label} (" + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1])) + ")")
    return 0


def _scores(labels, probs) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, probs)}


def _export(args: argparse.Namespace) -> int:
    from fastser.inference.checkpoint import load_trained
    from fastser.inference.export import export_onnx, export_program, export_torchscript
    from fastser.inference.export import output_paths

    out = Path(args.out)
    existing = [str(p) for p in output_paths(out, args.format) if p.exists() or p.is_symlink()]
    if existing and not args.force:
        raise PathExistsError(f"{' and '.join(existing)} exist(s); pass --force to replace "
                              "(nothing was changed)")
    trained = load_trained(args.checkpoint, **checkpoint_options(args))
    exporters = {"torchscript": export_torchscript, "export": export_program,
                 "onnx": export_onnx}
    exporters[args.format](trained, out)
    print(f"wrote {out} ({args.format}, {trained.recipe.name}, labels "
          f"{', '.join(trained.recipe.label_names)})")
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="segment length of a segment-level method (glrf: window; mmtl, stl, "
                        "mtl: max_duration), default: as trained")
    p.add_argument("--hop", type=float, metavar="SECONDS",
                   help="seconds between segment starts (glrf: test_hop; mmtl, stl, mtl: hop, "
                        "which replaces the equal pieces by fixed windows), default: as "
                        "trained")
    add_checkpoint_options(p)


def _amp_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amp", default="off", choices=("auto", "off", "bf16"),
                   help="mixed precision (default off; auto: bf16 on GPUs and on CPUs with "
                        "AMX-BF16 or AVX512-BF16)")


def _bulk_options(p: argparse.ArgumentParser) -> None:
    from fastser.inference.recognizer import BATCH_SECONDS

    _model_options(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUTS_HELP)
    p.add_argument("--extensions", help="audio file extensions searched for in folders, comma "
                                        "separated (default: wav, flac, ogg, opus, mp3, aiff, "
                                        "au, caf)")
    p.add_argument("--batch-seconds", type=float, default=BATCH_SECONDS, metavar="SECONDS",
                   help="audio per batch, padded to its longest recording (default "
                        f"{BATCH_SECONDS:g}); a longer recording is a batch of its own")
    p.add_argument("--words", help="word timings for the audio-text model (one recording): "
                                   "a .wdseg file or a JSON list of [word, start, end]")
    p.add_argument("--device", help="cpu (default) or cuda; under torchrun each process "
                                    "takes its local GPU")
    _amp_option(p)
    p.add_argument("--compile", action="store_true", help="run the model under torch.compile")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="emotion of recordings",
                       description="Label, per-class scores, (segment models) the segment "
                                   "timeline and (models with affect targets) the predicted "
                                   "valence/arousal/dominance of each recording, in batches; "
                                   "recordings that "
                                   "cannot be read are reported with the reason. Under "
                                   "torchrun, the processes share the inputs and rank 0 "
                                   "writes the output in input order.")
    _bulk_options(p)
    p.add_argument("--out", help="a .csv or .jsonl file (default: the terminal)")
    p.add_argument("--segments", action="store_true",
                   help="also one --out row per segment (segment-level methods)")
    p.add_argument("--json", action="store_true", help="terminal output as one JSON object")
    p.set_defaults(handler=_predict)

    p = sub.add_parser("embed", help="embeddings of recordings",
                       description="The pooled representation each method's classifier reads, "
                                   "per recording (and per segment or frame), as .npy arrays "
                                   "with CSV indexes in the folder --out.")
    _bulk_options(p)
    p.add_argument("--out", required=True, help="the output folder")
    p.add_argument("--segments", action="store_true",
                   help="also segment embeddings (glrf, mmtl, stl, mtl)")
    p.add_argument("--frames", action="store_true",
                   help="also frame embeddings (mstr, transformer)")
    p.set_defaults(handler=_embed)

    p = sub.add_parser("stream", help="live recognition of a stream, segment by segment",
                       description="Segment-level methods (glrf; mmtl, stl, mtl with --hop): "
                                   "one line per segment as soon as its audio has arrived, "
                                   "with the running utterance label; the same segments and "
                                   "scores as fastser predict on the same audio.")
    _model_options(p)
    p.add_argument("source", metavar="FILE|-",
                   help="an audio file, played in chunks, or - for raw PCM (signed 16-bit "
                        "little-endian mono) on standard input")
    p.add_argument("--rate", type=int, help="sample rate of the raw PCM (16000)")
    p.add_argument("--realtime", action="store_true",
                   help="play the file at wall-clock speed (default: as fast as it is scored)")
    p.add_argument("--chunk-ms", type=float, default=100.0,
                   help="milliseconds of audio per chunk (default 100)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _amp_option(p)
    p.set_defaults(handler=_stream)

    p = sub.add_parser("export", help="TorchScript, torch.export or ONNX file of a checkpoint",
                       description="TorchScript and torch.export files need fastser's shared "
                                   "library (torch.ops.load_library); ONNX files use standard "
                                   "operators only (the fused ops replaced by their reference "
                                   "decompositions) and run in onnxruntime without fastser.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--format", default="torchscript", choices=("torchscript", "export", "onnx"))
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    add_checkpoint_options(p)
    p.set_defaults(handler=_export)
