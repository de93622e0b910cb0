"""``fastser info`` and ``demo``: what this installation holds and what it does."""

from __future__ import annotations

import argparse
import json

from fastser.cli._common import CommandError


def _info(args: argparse.Namespace) -> int:
    import fastser

    if args.json:
        print(json.dumps(fastser.build_config(), indent=2))
    else:
        fastser.show_config()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fastser.workflows.demo import DEMO_MODELS, run_demo

    models = args.models.split(",") if args.models else list(DEMO_MODELS)
    unknown = [m for m in models if m not in DEMO_MODELS]
    if unknown:
        raise CommandError(f"--models: unknown {', '.join(unknown)}; choose from "
                           f"{', '.join(DEMO_MODELS)}")
    run_demo(args.out, models=models, seed=args.seed, quick=args.quick, force=args.force)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, compiled backends and threads",
                       description="Show what this fastser installation contains.")
    p.add_argument("--json", action="store_true", help="print the configuration as JSON")
    p.set_defaults(handler=_info)

    p = sub.add_parser("demo", help="train, evaluate, export and time all five methods",
                       description="Build the synthetic corpus, train each method with "
                                   "held-out voices, evaluate, export to TorchScript, time "
                                   "fused vs reference training steps, print one table.")
    p.add_argument("--out", default="fastser-demo", help="output folder (default fastser-demo)")
    p.add_argument("--models", help="comma-separated subset of glrf,sap,mmtl,mstr,can")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small corpus, one epoch (smoke run)")
    p.add_argument("--force", action="store_true", help="replace an earlier demo in --out")
    p.set_defaults(handler=_demo)
