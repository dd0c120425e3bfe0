"""``lesanet prepare``: DeepLesion-layout folder + report sentences -> labels, split, label ontology, patch cache."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="mine labels, choose the label list, split and cache patches of a DeepLesion-layout data set",
        description="Mines every lesion's report sentence (relevant / uncertain / irrelevant), chooses the label "
        "list (the --labels file's term_list, else the ontology terms with at least --min-positives training "
        "lesions after label expansion, as the paper chose its 171 labels), splits by DL_info's Train_Val_Test, "
        "and writes DATA_DIR/labels.json (official split layout), mined.jsonl, label_ontology.json, cache/ and, "
        "for phantoms (DL_ROOT/truth.jsonl), truth.json with the true labels of the test lesions.",
    )
    parser.add_argument("dl_root", metavar="DL_ROOT", help="folder with DL_info.csv and Images_png/")
    parser.add_argument("--out", required=True, metavar="DATA_DIR", help="output folder")
    parser.add_argument("--sentences", metavar="FILE.jsonl", help="report sentences {\"id\": DL_info row, \"text\"} "
                        "(default: DL_ROOT/sentences.jsonl)")
    parser.add_argument("--ontology", metavar="PATH", help="ontology .xlsx or .json (default: the shipped one)")
    parser.add_argument("--labels", metavar="SPLIT_JSON", help="use this split file's term_list as the labels")
    parser.add_argument("--min-positives", type=int, default=None, metavar="N",
                        help="training lesions a term needs to become a label (default 10)")
    parser.add_argument("--method", choices=("combined", "rules", "cnn"), default="combined",
                        help="text-mining relevance method (default: combined)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier preparation in DATA_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import invalid
    from ..pipeline.prepare import DEFAULT_MIN_POSITIVES, prepare

    if args.labels and args.min_positives is not None:
        raise invalid("--min-positives", "cannot be combined with --labels (its term_list fixes the labels)",
                      args.min_positives)
    summary = prepare(args.dl_root, args.out, sentences=args.sentences, ontology=args.ontology, labels=args.labels,
                      min_positives=DEFAULT_MIN_POSITIVES if args.min_positives is None else args.min_positives,
                      method=args.method, overwrite=args.overwrite, progress=not args.quiet)
    print(f"prepared {summary.out_dir}: {len(summary.term_list)} labels; lesions mined per split {summary.lesions}; "
          f"cached {summary.cache['counts']} (skipped {summary.cache['skipped']})"
          + (f"; truth for {summary.truth_lesions} test lesions" if summary.truth_lesions else "")
          + f" in {summary.seconds:.0f} s")
    return 0
