"""``fastser data check`` and ``fastser data convert``: a corpus before training on it, and
any corpus written as a manifest."""

from __future__ import annotations

import argparse
import json

from fastser.cli._common import add_data_options, data_options


def _check(args: argparse.Namespace) -> int:
    from fastser.workflows.data import check_data

    report = check_data(data_options(args))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from fastser.workflows.data import convert_data

    corpus, path = convert_data(data_options(args), args.out, overwrite=args.force)
    print(f"wrote {len(corpus)} utterances of {args.data} to {path} (read it with --data "
          f"manifest:{path}; a manifest's class order is the order labels first appear in it, "
          f"so pass --labels {','.join(corpus.labels)} to keep this one)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check a corpus before training, or write it as a manifest",
                       description="`fastser data check SOURCE`: utterances, hours, speakers, "
                                   "sessions, classes per speaker, affect annotations and "
                                   "which methods can train on it (and why not). `fastser data "
                                   "convert SOURCE --out FILE.jsonl`: the corpus as a manifest.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="what a corpus holds and which methods it suits")
    add_data_options(check, positional=True, folds=True)
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=_check)

    convert = actions.add_parser("convert", help="write a corpus as a manifest",
                                 description="Write any corpus source (with --labels / "
                                             "--label-map applied) as a manifest: .jsonl, .csv "
                                             "or .tsv, audio paths relative to it.")
    add_data_options(convert, positional=True)
    convert.add_argument("--out", required=True, help="the manifest to write (.jsonl, .csv, "
                                                      ".tsv)")
    convert.add_argument("--force", action="store_true", help="replace an existing --out")
    convert.set_defaults(handler=_convert)
