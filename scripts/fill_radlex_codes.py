"""Fills missing RadLex codes of a project ontology JSON from a RadLex term list (CSV: name, RID, parent RID).

Authoring aid for ontology maintainers: a term gets the RID of the first RadLex name equal (case-insensitive) to
its name or one of its synonyms; terms that already have a code keep it. Prints the terms left without a code.

    python scripts/fill_radlex_codes.py ONTOLOGY.json RADLEX.csv [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LesaNetCore.fileio import write_text_atomic  # noqa: E402
from LesaNetCore.ontology import read_ontology_json  # noqa: E402


def read_radlex_names(path: Path) -> dict[str, str]:
    """Lower-case name -> RID. Some rows hold unquoted commas in the name, so split from the right."""
    names: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("RID"):
            names.setdefault(parts[0].strip().strip('"').lower(), parts[1])
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ontology", type=Path)
    parser.add_argument("radlex", type=Path)
    parser.add_argument("--write", action="store_true", help="update the ontology file in place (atomically)")
    args = parser.parse_args()
    read_ontology_json(args.ontology)  # validate before touching it
    document = json.loads(args.ontology.read_text(encoding="utf-8"))
    radlex = read_radlex_names(args.radlex)
    missing = []
    for term in document["terms"]:
        if term.get("radlex"):
            continue
        for candidate in [term["name"], *term.get("synonyms", [])]:
            if candidate.lower() in radlex:
                term["radlex"] = radlex[candidate.lower()]
                break
        else:
            missing.append(term["name"])
    print(f"{len(document['terms']) - len(missing)} of {len(document['terms'])} terms coded; without a code: {missing}")
    if args.write:
        write_text_atomic(args.ontology, json.dumps(document, indent=1) + "\n", "ontology", overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
