"""``lesanet nltk-data``: make NLTK's WordNet 3.0 available for the text miner (offline when possible)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "nltk-data",
        help="install WordNet for the text miner (offline from Debian's wordnet-base when present)",
        description="Makes WordNet 3.0 available to NLTK: uses a copy NLTK already finds; else builds one from "
        "Debian's wordnet-base (/usr/share/wordnet) into $LESANET_NLTK_DATA or ~/.cache/lesanet/nltk_data, "
        "which the text miner always searches; else runs nltk.download('wordnet') into that folder.",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.add_argument("--no-download", action="store_true", help="never try the network")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..textmine.nltk_setup import ensure_wordnet

    how, where = ensure_wordnet(download=not args.no_download)
    if not args.quiet:
        verb = {"found": "found", "debian": "built from Debian's wordnet-base", "download": "downloaded"}[how]
        print(f"WordNet 3.0 {verb}: {where}")
    return 0
