"""``lesanet ablation``: train and evaluate the rows of the paper's Table 1."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from ..pipeline.ablation import ABLATIONS

    parser = subparsers.add_parser(
        "ablation",
        help="train and evaluate the paper's ablations (Table 1) on a prepared data folder",
        description="Trains each Table 1 row (" + ", ".join(ABLATIONS) + ") with the same seed and settings, "
        "evaluates it like `lesanet evaluate`, and writes DIR/ablation.md and DIR/ablation.json (a run and an "
        "evaluation folder per row under DIR/<row>/).",
    )
    parser.add_argument("--data", required=True, metavar="DATA_DIR", help="folder written by `lesanet prepare`")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--epochs", type=int, help="epochs per row (default: the paper's 15)")
    parser.add_argument("--arch", default="lesanet_demo", help="model name (default lesanet_demo)")
    parser.add_argument("--batch-size", type=int, help="lesions per step (default: the paper's 128)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(ABLATIONS), help="rows to run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change a shared TrainConfig setting, e.g. --set seed=1 (repeatable)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results in DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..pipeline.ablation import run_ablation
    from ..training.config import TrainConfig, apply_overrides

    base = apply_overrides(TrainConfig(), args.overrides)
    run_ablation(args.data, args.out, epochs=args.epochs, arch=args.arch, only=args.only, base=base,
                 batch_size=args.batch_size, device=args.device, overwrite=args.overwrite, progress=not args.quiet)
    print((Path(args.out) / "ablation.md").read_text(encoding="utf-8"))
    return 0
