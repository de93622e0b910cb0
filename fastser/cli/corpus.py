"""``fastser synth``: corpora."""

from __future__ import annotations

import argparse


def _synth(args: argparse.Namespace) -> int:
    from fastser.data.synthetic import write_synthetic

    corpus = write_synthetic(args.out, utterances=args.utterances, speakers=args.speakers,
                             seed=args.seed)
    print(f"wrote {len(corpus)} utterances to {args.out} (read it back with "
          f"--data synthetic:{args.out})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the synthetic corpus to a folder",
                       description="Generate the synthetic acted-emotion corpus (eSpeak NG "
                                   "speech) into an empty folder: wav/ and manifest.json.")
    p.add_argument("--out", required=True)
    p.add_argument("--utterances", type=int, default=480)
    p.add_argument("--speakers", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_synth)
