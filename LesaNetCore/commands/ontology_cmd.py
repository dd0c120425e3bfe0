"""``lesanet ontology stats``: counts of an ontology, optionally restricted to a label list."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ontology", help="inspect the lesion ontology")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = actions.add_parser(
        "stats",
        help="count terms, classes, hierarchy edges and exclusive pairs",
        description="Counts of the default ontology, or of an official workbook (--xlsx), optionally restricted "
        "to the label list of a split file (--labels).",
    )
    stats.add_argument("--xlsx", metavar="PATH", help="official DeepLesion ontology workbook (default: the shipped ontology)")
    stats.add_argument("--ontology", metavar="PATH", help="a project ontology .json instead of the default")
    stats.add_argument("--labels", metavar="SPLIT_JSON", help="restrict to the term_list of this label/split file")
    stats.add_argument("--json", action="store_true", help="print one JSON object (the default prints a table)")
    stats.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    from ..errors import LesaNetError
    from ..ontology import load_ontology, read_label_split

    if args.xlsx and args.ontology:
        raise LesaNetError(f"--xlsx/--ontology: give at most one ontology, but got both {args.xlsx!r} and {args.ontology!r}")
    ontology = load_ontology(args.xlsx or args.ontology)
    if args.labels:
        split = read_label_split(args.labels)
        missing = [t for t in split.term_list if t not in ontology]
        if missing:
            raise LesaNetError(f"--labels: every listed term must be in the ontology, but got {len(missing)} unknown, "
                               f"e.g. {missing[0]!r}")
        ontology = ontology.subset(split.term_list)
    stats = ontology.stats()
    if args.json:
        print(json.dumps(stats))
        return 0
    print(ontology.name)
    classes = stats["classes"]
    print(f"  terms               {stats['terms']:>6}  (body part {classes['bodypart']}, type {classes['type']}, "
          f"attribute {classes['attribute']})")
    for key in ("parent_child_pairs", "ancestor_pairs", "exclusive_pairs"):
        print(f"  {key.replace('_', ' '):<19} {stats[key]:>6}")
    coded = sum(1 for t in ontology if t.radlex)
    print(f"  RadLex-coded terms  {coded:>6}")
    if ontology.warnings:
        print(f"  repairs of the source: {len(ontology.warnings)} (e.g. {ontology.warnings[0]})")
    return 0
