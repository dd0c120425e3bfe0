"""``lesanet finetune``: a checkpoint trained further on a reader's corrections."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..review.finetune import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_LR

    parser = subparsers.add_parser(
        "finetune",
        help="continue a checkpoint on a reader's corrections, recalibrate its thresholds",
        description="Trains MODEL further on a corrections folder (written by the Slicer module's review, or by "
        "LesaNetCore.review.write_correction), optionally mixed with the original training data, calibrates the "
        "thresholds on the corrections' held-out part and writes RUN/best.pt (recording its parent and data) and "
        "RUN/comparison.json (parent and child on the held-out corrections).",
    )
    parser.add_argument("--model", required=True, metavar="CKPT", help="the parent checkpoint")
    parser.add_argument("--corrections", required=True, metavar="DIR", help="the corrections folder")
    parser.add_argument("--out", required=True, metavar="RUN", help="the run folder (must not hold a run)")
    parser.add_argument("--data", metavar="DATA_DIR", help="the original training data (a prepared folder or "
                        "patch cache) to mix in")
    parser.add_argument("--mix-ratio", type=float, default=1.0, help="original lesions per correction (default 1)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"default {DEFAULT_EPOCHS}")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"default {DEFAULT_LR}")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"default {DEFAULT_BATCH}")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..review.finetune import finetune
    from ._args import check_checkpoint_file

    check_checkpoint_file(args.model, "--model")
    summary = finetune(args.model, args.corrections, args.out, data=args.data, mix_ratio=args.mix_ratio,
                       epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, device=args.device,
                       seed=args.seed)
    comparison = summary["comparison"]
    print(f"wrote {summary['checkpoint']} (parent {summary['provenance']['parent_digest'][:12]}, "
          f"{summary['provenance']['lesions']} corrections, {comparison['lesions']} held out)")
    for name in ("parent", "child"):
        numbers = comparison[name]
        print(f"{name:>6} on the held-out corrections: F1 {numbers.get('f1') or 0:.3f}, "
              f"precision {numbers.get('precision') or 0:.3f}, recall {numbers.get('recall') or 0:.3f}")
    return 0
