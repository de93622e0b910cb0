"""``fastser bench``: fused vs reference speed and memory tables."""

from __future__ import annotations

import argparse

import torch

from fastser.cli._common import CommandError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}


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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="fused vs reference speed and memory tables",
                       description="Time the fused ops and models against their reference PyTorch "
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
