"""``lesanet bench``: speed numbers of this machine against its own peak (see LesaNetCore.bench)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..bench import SECTIONS

    parser = subparsers.add_parser("bench", help="measure model, patch, annotate, retrieval and mining speed",
                                   description=__doc__)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"sections to run (default all: {', '.join(SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="100k instead of 1M lesions for the approximate index")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the model and annotate sections")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="rewrite the generated tables of FILE (e.g. docs/benchmarks.md) from the results")
    parser.add_argument("--from-json", type=Path, metavar="RUN_JSON",
                        help="measure nothing: take the results of an earlier `lesanet bench --json` (with --markdown)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..bench import SECTIONS, run_bench
    from ..errors import LesaNetError

    if args.from_json is not None:
        if args.markdown is None:
            raise LesaNetError("--from-json: needs --markdown (it only rewrites tables), but got no --markdown")
        try:
            results = json.loads(args.from_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise LesaNetError(f"--from-json: must be a readable JSON file written by `lesanet bench --json`, but "
                               f"got {str(args.from_json)!r} ({err})") from err
    else:
        results = run_bench(tuple(args.only or SECTIONS), quick=args.quick,
                            echo=lambda text: print(text, file=sys.stderr), device=args.device)
    if args.markdown is not None:
        from ..bench.report import update_markdown

        update_markdown(args.markdown, results)
    if args.from_json is not None:
        return 0
    if args.json:
        print(json.dumps(results, default=float))
        return 0
    for key, value in results.items():
        if key == "peak_errors":
            for message in value:
                print(f"peak is wrong: {message}")
        elif isinstance(value, float):
            print(f"{key:<32} {value:.4g}")
        else:
            print(f"{key:<32} {value}")
    return 0
