"""``lesanet build-demo``: synthesize phantoms, prepare, train, calibrate, evaluate and index the demo model."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from ..pipeline.demo_model import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_LESIONS, DEFAULT_SEED

    parser = subparsers.add_parser(
        "build-demo",
        help="build the shipped demo model, its evaluation and reference index from phantoms",
        description="One reproducible command: synthesizes phantom lesions, prepares them, trains lesanet_demo on "
        "the CPU, calibrates thresholds on validation, and writes OUT/model.pt, OUT/evaluation/, OUT/index/ and "
        "OUT/README.md (default OUT: the package's data/demo, which Annotator() loads). The defaults take about "
        "10 minutes on 2 CPU cores.",
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: LesaNetCore/data/demo)")
    parser.add_argument("--lesions", type=int, default=DEFAULT_LESIONS,
                        help=f"phantom lesions (default {DEFAULT_LESIONS})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs (default {DEFAULT_EPOCHS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"batch (default {DEFAULT_BATCH})")
    parser.add_argument("--work-dir", metavar="DIR", help="keep the phantom, prepared data and run here "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo in OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline.demo_model import build_demo, check_build_args

    check_build_args(args.lesions, args.epochs, args.seed, args.batch_size)
    build_demo(args.out, lesions=args.lesions, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
               work_dir=args.work_dir, overwrite=args.overwrite, progress=not args.quiet)
    return 0
