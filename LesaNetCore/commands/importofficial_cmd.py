"""``lesanet import-official``: convert the released LesaNet ``.pth.tar`` into a self-describing checkpoint."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-official",
        help="convert an official LesaNet checkpoint (safely: no code in the file runs)",
        description=(
            "Read an official LesaNet .pth.tar (Python 2.7 pickle, legacy or zip torch format) through an "
            "allow-listing unpickler, map its weights onto lesanet_vgg16bn and write a self-describing checkpoint "
            "with label names, classes, preprocessing and (optionally) the released decision thresholds."
        ),
    )
    parser.add_argument("ckpt", metavar="CKPT", help="official checkpoint, e.g. LesaNet_epoch_15.pth.tar")
    parser.add_argument("--out", required=True, metavar="OUT", help="output checkpoint (.pt)")
    parser.add_argument("--thresholds", metavar="XLSX", help="labels_for_demo.xlsx: term order, thresholds, accuracy")
    parser.add_argument("--labels", metavar="SPLIT_JSON", help="split JSON whose term_list names the outputs")
    parser.add_argument("--ontology", metavar="PATH", help="ontology for label classes and digest "
                        "(default: the shipped one when it names every label)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import LesaNetError
    from ..ontology import load_ontology, read_label_split
    from ..training.official import import_official
    from ._args import check_checkpoint_file

    check_checkpoint_file(args.ckpt, "CKPT")
    names = list(read_label_split(args.labels).term_list) if args.labels else None
    kwargs = dict(thresholds_xlsx=args.thresholds, label_names=names, overwrite=args.overwrite)
    if args.ontology:
        summary = import_official(args.ckpt, args.out, ontology=load_ontology(args.ontology), **kwargs)
    else:
        # The shipped ontology may not spell every official label (it merges some); then the labels stay as the
        # checkpoint names them, without an ontology digest, and the user is told how to attach one.
        try:
            summary = import_official(args.ckpt, args.out, ontology=load_ontology(None), **kwargs)
        except LesaNetError as err:
            if not str(err).startswith("--ontology"):
                raise
            print(f"lesanet import-official: warning: the shipped ontology cannot name these labels ({err}); "
                  "importing without an ontology digest (pass --ontology lesion_ontology_181022.xlsx to attach "
                  "the official one)", file=sys.stderr)
            summary = import_official(args.ckpt, args.out, ontology=None, **kwargs)
    print(json.dumps(summary, indent=2))
    return 0
