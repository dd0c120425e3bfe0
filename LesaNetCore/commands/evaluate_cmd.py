"""``lesanet evaluate``: a checkpoint on a prepared data folder -> the paper's evaluation report."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model as the paper does (per-label AUC/P/R/F1, ACG@5) and write the report",
        description="Predicts the validation and test lesions, calibrates per-label thresholds on validation (F1 "
        "over 0.3..0.9), makes decisions consistent with the label ontology, and reports per-label and per-class "
        "averaged AUC, precision, recall and F1 by class and training frequency (uncertain entries left out), "
        "ACG@5 of test lesions retrieving training lesions of other patients, and the hand-labeled (or phantom "
        "truth) set when given. Writes REPORT_DIR/report.json, report.md and PNG plots. With --corrections instead "
        "of --data: compares a fine-tuned MODEL with its parent on the corrections' held-out lesions (the reader's "
        "labels as truth) and writes REPORT_DIR/comparison.json, comparison.md and comparison.png.",
    )
    parser.add_argument("--model", required=True, metavar="CKPT", help="checkpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="DATA_DIR", help="folder written by `lesanet prepare`")
    source.add_argument("--corrections", metavar="DIR", help="a corrections folder: compare MODEL with its parent "
                        "on the held-out corrections")
    parser.add_argument("--parent", metavar="CKPT", help="with --corrections: the parent (default: the one MODEL "
                        "records from lesanet finetune)")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="evaluated split (default test)")
    parser.add_argument("--hand-labeled", metavar="FILE", help="hand_labeled_dev.json or a phantom truth.json "
                        "(default: DATA_DIR/truth.json when present)")
    parser.add_argument("--batch-size", type=int, default=64, help="lesions per forward pass (default 64)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..pipeline.evaluate import evaluate, format_headline, grid_verdict
    from ..pipeline.prepare import TRUTH_FILE
    from ._args import check_checkpoint_file

    check_checkpoint_file(args.model, "--model")
    if args.corrections:
        return _compare(args)
    if args.parent:
        from ..errors import invalid

        raise invalid("--parent", "goes with --corrections (a parent is compared on corrections)", args.parent)
    hand = args.hand_labeled
    if hand is None and (Path(args.data) / TRUTH_FILE).is_file():
        hand = Path(args.data) / TRUTH_FILE
    report = evaluate(args.model, args.data, args.out, split=args.split, hand_labeled=hand,
                      batch_size=args.batch_size, device=args.device, overwrite=args.overwrite,
                      progress=not args.quiet)
    print(format_headline(report))
    grids = report.get("threshold_grids") or {}
    if "reference" in grids and "fine" in grids:
        ref, fine = grids["reference"]["test_f1"], grids["fine"]["test_f1"]
        print(f"threshold grid: the fine 0.01 grid {grid_verdict(fine - ref)} (test F1 {fine:.4f} vs reference "
              f"{ref:.4f}, raw thresholds)")
    print(f"wrote {Path(args.out) / 'report.md'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..review.compare import REPORT_MD, evaluate_corrections
    from ._args import check_checkpoint_file

    if args.parent:
        check_checkpoint_file(args.parent, "--parent")
    report = evaluate_corrections(args.model, args.corrections, args.out, parent=args.parent,
                                  overwrite=args.overwrite)
    print(f"{report['lesions']} held-out corrections")
    for name in ("parent", "child"):
        numbers = report[name]
        print(f"{name:>6}: F1 {numbers.get('f1') or 0:.3f}, precision {numbers.get('precision') or 0:.3f}, "
              f"recall {numbers.get('recall') or 0:.3f}")
    print(f"wrote {Path(args.out) / REPORT_MD}")
    return 0
