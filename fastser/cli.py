"""The ``fastser`` command."""

from __future__ import annotations

import argparse
import sys

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}


def _info(args: argparse.Namespace) -> int:
    import fastser

    if args.json:
        import json

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
        raise SystemExit(f"fastser bench: unknown suite(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known) or 'none'}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("fastser bench: --device cuda asked for, but no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = report.run(suites, device, DTYPES[args.dtype], quick=args.quick,
                        min_time=args.min_time)
    if args.json:
        report.write_json(result, args.json)
        print(f"\nwrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastser",
        description="Speech emotion recognition on fused C++/CUDA PyTorch operators.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="versions, compiled backends and threads",
                          description="Show what this fastser installation contains.")
    info.add_argument("--json", action="store_true", help="print the configuration as JSON")
    info.set_defaults(handler=_info)

    bench = sub.add_parser(
        "bench", help="fused vs naive speed and memory tables",
        description="Time the fused ops and models against their naive PyTorch versions, "
                    "forward and forward+backward, with peak memory and speed-up ratios.")
    bench.add_argument("--suite", action="append", metavar="NAME",
                       help="suite to run (repeatable; default: all)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    bench.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    bench.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    bench.add_argument("--min-time", type=float, default=0.3,
                       help="seconds of repeated calls per measurement (default 0.3)")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
