"""``lesanet bench``: speed numbers of this machine (see LesaNetCore.bench)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..bench import SECTIONS

    parser = subparsers.add_parser("bench", help="measure model, patch, annotate, retrieval and mining speed",
                                   description=__doc__)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"sections to run (default all: {', '.join(SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="100k instead of 1M lesions for the approximate index")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the model and annotate sections")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..bench import SECTIONS, run_bench

    results = run_bench(tuple(args.only or SECTIONS), quick=args.quick,
                        echo=lambda text: print(text, file=sys.stderr), device=args.device)
    if args.json:
        print(json.dumps(results, default=float))
    else:
        for key, value in results.items():
            print(f"{key:<32} {value:.4g}" if isinstance(value, float) else f"{key:<32} {value}")
    return 0
