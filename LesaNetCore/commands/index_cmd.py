"""``lesanet index build|add|search``: the similar-lesion reference index."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build the reference index of a prepared split, add reviewed lesions to it, or search it",
        description="build: embeds every lesion of a prepared split (default train) with the model and writes "
        "the index (lesion id = DL_info row, patient, labels, sentence, 64x64 thumbnail). search: prints the "
        "nearest reference lesions of a prepared lesion (--lesion) or of a box on a CT volume, never from the "
        "query's own patient.",
    )
    sub = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build the reference index")
    build.add_argument("--model", required=True, metavar="CKPT", help="checkpoint")
    build.add_argument("--data", required=True, metavar="DATA_DIR", help="folder written by `lesanet prepare`")
    build.add_argument("--out", required=True, metavar="INDEX_DIR", help="index folder")
    build.add_argument("--split", choices=("train", "val", "test"), default="train", help="indexed split")
    build.add_argument("--method", choices=("auto", "exact", "ivf", "hnsw"), default="auto",
                       help="search method (auto: exact up to 100k lesions, faiss IVF above)")
    build.add_argument("--sentences", metavar="FILE.jsonl", help="report sentences (default: DATA_DIR/mined.jsonl)")
    build.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    build.add_argument("--overwrite", action="store_true", help="replace an existing index")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=run_build)

    add = sub.add_parser("add", help="add a reader's reviewed lesions to an index without rebuilding it",
                         description="Embeds the accepted and corrected lesions of a corrections folder with the "
                         "index's model and adds them (the reader's labels, patient, thumbnail); lesions added "
                         "before are updated where their labels changed. Writes INDEX_DIR in place (atomically) "
                         "or a new --out folder.")
    add.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder")
    add.add_argument("--model", required=True, metavar="CKPT", help="the checkpoint that built the index")
    add.add_argument("--corrections", required=True, metavar="DIR", help="corrections folder")
    add.add_argument("--out", metavar="NEW_INDEX_DIR", help="write the grown index here (default: in place)")
    add.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    add.add_argument("--quiet", action="store_true", help="no progress bars")
    add.set_defaults(func=run_add)

    search = sub.add_parser("search", help="print the nearest reference lesions")
    search.add_argument("volume", nargs="?", metavar="VOLUME", help="CT volume (with --box-ijk or --box-lps)")
    search.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder")
    search.add_argument("--lesion", type=int, metavar="ID", help="a prepared lesion (DL_info row index)")
    search.add_argument("--data", metavar="DATA_DIR", help="with --lesion: the prepared folder")
    box = search.add_mutually_exclusive_group()
    box.add_argument("--box-ijk", metavar="I1,J1,I2,J2,K")
    box.add_argument("--box-lps", metavar="X1,Y1,X2,Y2,Z")
    search.add_argument("--model", metavar="CKPT", help="checkpoint (needed for a volume; with --lesion, embeds a "
                        "lesion that is not in the index)")
    search.add_argument("--exclude-patient", metavar="ID", help="with a volume: the query's patient id")
    search.add_argument("-k", type=int, default=5, help="lesions to print (default 5)")
    search.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    search.set_defaults(func=run_search)


def run_build(args: argparse.Namespace) -> int:
    from ..pipeline.index_build import build_reference_index
    from ._args import check_checkpoint_file

    check_checkpoint_file(args.model, "--model")
    index = build_reference_index(args.model, args.data, args.out, split=args.split, method=args.method,
                                  sentences=args.sentences, device=args.device, overwrite=args.overwrite,
                                  progress=not args.quiet)
    print(f"wrote {index!r} to {args.out}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from ..review.reference import add_corrections_to_index
    from ._args import check_checkpoint_file

    check_checkpoint_file(args.model, "--model")
    counts = add_corrections_to_index(args.index, args.model, args.corrections, out=args.out, device=args.device,
                                      progress=not args.quiet)
    print(f"{counts['added']} lesions added, {counts['updated']} updated, {counts['unchanged']} unchanged: "
          f"{counts['total']} in {counts['index']}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from ..errors import LesaNetError, invalid
    from ..pipeline.index_build import format_similar, search_lesion

    if args.k < 1:
        raise invalid("-k", "must be a positive integer", args.k)
    if args.lesion is not None:
        if args.volume or args.box_ijk or args.box_lps:
            raise LesaNetError("--lesion: search either a prepared lesion or a box on a volume, but got both")
        if not args.data:
            raise invalid("--data", "is required with --lesion", args.data)
        similar, patient = search_lesion(args.index, args.lesion, args.data, checkpoint=args.model, k=args.k,
                                         device=args.device)
        print(f"nearest to lesion {args.lesion} (patient {patient} excluded):")
        print(format_similar(similar))
        return 0
    if not args.volume or not (args.box_ijk or args.box_lps):
        raise LesaNetError("search: must be given --lesion ID --data DATA_DIR, or VOLUME with --box-ijk/--box-lps, "
                           f"but got volume={args.volume!r}, box={args.box_ijk or args.box_lps!r}")
    if not args.model:
        raise invalid("--model", "is required to embed a box on a volume", args.model)
    from ..annotate import Annotator
    from ..imaging import read_volume
    from ._args import check_checkpoint_file, parse_box

    check_checkpoint_file(args.model, "--model")
    annotator = Annotator(args.model, args.index, device=args.device, top_k=args.k)
    volume = read_volume(args.volume)
    kwargs = {"box_ijk": parse_box("--box-ijk", args.box_ijk)} if args.box_ijk else \
        {"box_lps": parse_box("--box-lps", args.box_lps)}
    result = annotator.annotate(volume, exclude_patient=args.exclude_patient, **kwargs)
    print(format_similar(list(result.similar)))
    return 0
