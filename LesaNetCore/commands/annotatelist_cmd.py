"""``lesanet annotate-list``: every lesion of a worklist, the model loaded once; resumable; one SR per study."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ._args import add_annotator_arguments

    parser = subparsers.add_parser(
        "annotate-list",
        help="annotate every lesion of a worklist (CSV, JSON lines or DeepLesion's DL_info.csv)",
        description="Annotates the lesions of a worklist with the model loaded once, volume by volume in batches, "
        "and writes OUT/lesions/ID.json per lesion, OUT/sr/STUDY.dcm per study (one measurement group per "
        "lesion), OUT/results.json and OUT/summary.csv. Run it again on the same OUT to continue a run that was "
        "stopped: lesions already done are not annotated again. Worklist columns: volume, series_uid, box_ijk | "
        "box_lps | recist_ijk | recist_lps, lesion_id, patient_id, study, sentence (see "
        "LesaNetCore/worklist/items.py).",
    )
    parser.add_argument("worklist", help="CSV, JSON-lines file, or a DeepLesion-layout DL_info.csv")
    parser.add_argument("--out", required=True, metavar="DIR", help="the run folder (created, or resumed)")
    add_annotator_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="boxes per forward pass (default 16)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..annotate import Annotator
    from ..worklist import annotate_worklist, read_worklist
    from ._args import check_checkpoint_file

    items = read_worklist(args.worklist)
    if args.model is not None:
        check_checkpoint_file(args.model, "--model")
    annotator = Annotator(args.model, args.index, device=args.device, threshold_offset=args.threshold_offset,
                          top_k=args.top_k)
    if args.model is None:
        print("note: the demo model is trained on phantoms; not for clinical use")
    done = annotate_worklist(items, args.out, annotator, batch_size=args.batch_size,
                             progress=not args.no_progress)
    print(f"{done.annotated} lesions annotated, {done.resumed} done before, {len(done.failed)} failed; "
          f"{len(done.srs)} SRs in {done.out_dir / 'sr'} ({done.seconds:.1f} s)")
    for lesion_id, message in done.failed.items():
        print(f"lesion {lesion_id!r}: {message}")
    return 1 if done.failed else 0
