"""``lesanet demo``: the embedded default end to end (phantom CT, demo model and index, reports, figure)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo on a phantom CT (no data or network needed)",
        description="Makes a phantom CT, annotates its lesions with the shipped demo model and reference index, "
        "and writes the CT, SR / JSON / Markdown reports and a figure. The demo model is trained on phantoms and "
        "is not for clinical use.",
    )
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=7, help="phantom seed (default 7)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, seed=args.seed, device=args.device)
    return 0
