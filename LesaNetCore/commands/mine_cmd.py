"""``lesanet mine``: report sentences (JSON lines) -> lesion labels (JSON lines); or score the miner."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import LesaNetError, invalid

_PROGRESS_MIN_LINES = 2000


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "mine",
        help="mine lesion labels from report sentences",
        description="Mines the labels of the BOOKMARK lesion from each input line {\"id\": ..., \"text\": ...} "
        "and writes {\"id\", \"relevant\", \"uncertain\", \"irrelevant\", \"expanded\"} per line (term names; "
        "expanded = relevant + uncertain + their ancestors). A bad input line is reported with its number on "
        "stderr and skipped; the exit status is then 1. With --evaluate, scores the miner on hand-labeled "
        "descriptions instead.",
    )
    parser.add_argument("--input", metavar="IN.jsonl", help="one JSON object per line with 'id' and 'text'")
    parser.add_argument("--output", metavar="OUT.jsonl", help="where to write the labels (atomically)")
    parser.add_argument("--ontology", metavar="PATH", help="official .xlsx workbook or project .json ontology "
                        "(default: the project's ontology)")
    parser.add_argument("--labels", metavar="SPLIT_JSON", help="official label/split file: restrict the output "
                        "to its term_list")
    parser.add_argument("--method", choices=("combined", "rules", "cnn"), default="combined",
                        help="relevance method (default: combined)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--evaluate", metavar="HAND_LABELED_JSON", help="score against hand-labeled "
                        "descriptions (hand_labeled_dev.json); needs --ontology XLSX and --labels SPLIT_JSON")
    parser.add_argument("--json", action="store_true", help="with --evaluate: print the scores as JSON")
    parser.set_defaults(func=run)


def _load(args):
    from ..ontology import load_ontology, read_label_split

    ontology = load_ontology(args.ontology)
    term_list = read_label_split(args.labels).term_list if args.labels else None
    return ontology, term_list


def run(args: argparse.Namespace) -> int:
    if args.evaluate:
        return _evaluate(args)
    if not args.input:
        raise invalid("--input", "is required (or pass --evaluate)", args.input)
    if not args.output:
        raise invalid("--output", "is required with --input", args.output)
    from pathlib import Path

    from ..fileio import atomic_path, check_writable
    from ..textmine.mine import TextMiner

    source = Path(args.input)
    if not source.is_file():
        raise invalid("--input", "must be an existing JSON-lines file", str(source))
    check_writable(args.output, "--output", args.overwrite)
    ontology, term_list = _load(args)
    miner = TextMiner(ontology, labels=term_list, method=args.method)
    with open(source, encoding="utf-8") as fh:
        lines = fh.readlines()
    skipped = written = 0
    from tqdm import tqdm

    progress = tqdm(lines, desc="mine", unit="line", disable=len(lines) < _PROGRESS_MIN_LINES)
    with atomic_path(args.output, "--output", args.overwrite) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for number, line in enumerate(progress, start=1):
            if not line.strip():
                continue
            try:
                record = _parse(line)
                result = miner.mine(record["text"], record["id"])
            except LesaNetError as err:
                skipped += 1
                print(f"lesanet mine: {source}:{number}: {err}; line skipped", file=sys.stderr)
                continue
            out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            written += 1
    print(f"lesanet mine: wrote {written} lines to {args.output}" + (f", skipped {skipped}" if skipped else ""),
          file=sys.stderr)
    return 1 if skipped else 0


def _parse(line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise LesaNetError(f"line: must be a JSON object ({err.msg}), but got {line.strip()[:80]!r}") from err
    if not isinstance(record, dict):
        raise invalid("line", "must be a JSON object", record)
    if "id" not in record:
        raise invalid("id", "must be present", sorted(record))
    if not isinstance(record.get("text"), str):
        raise invalid("text", "must be a string", record.get("text"))
    return record


def _evaluate(args: argparse.Namespace) -> int:
    if not args.ontology or not args.labels:
        raise invalid("--evaluate", "needs --ontology XLSX and --labels SPLIT_JSON",
                      {"ontology": args.ontology, "labels": args.labels})
    from ..textmine.evaluate import evaluate_hand_labeled, format_report

    ontology, term_list = _load(args)
    result = evaluate_hand_labeled(args.evaluate, ontology, term_list, method=args.method)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0
