"""The ``lesanet`` command.

Each subcommand lives in its own module under ``LesaNetCore.commands`` with ``add_parser(subparsers)``; heavy
libraries (torch, SimpleITK) are imported inside the command functions so ``lesanet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

from .errors import LesaNetError

# Every ``LesaNetCore/commands/*_cmd.py`` is a subcommand module; these come first in --help, the rest follow
# in name order. Discovery keeps command modules independent of each other: adding one edits no shared list.
_HELP_ORDER = ("demo", "annotate", "mine", "patch", "synth", "train", "evaluate", "index", "ontology")

_NEGATIVE_VALUE = re.compile(r"^-\d|^-\.\d")


def join_negative_values(argv: list[str]) -> list[str]:
    """Lets users type ``--box-lps -120.5,30,...``: argparse would read the value as an option.

    Example:
        >>> join_negative_values(["patch", "--box-lps", "-1.5,2,3,4,5", "--out", "p.npz"])
        ['patch', '--box-lps=-1.5,2,3,4,5', '--out', 'p.npz']
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and "=" not in token and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesanet",
        description="LesaNet lesion annotation: ontology, text mining, CT patches, training, retrieval, reports.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(name).add_parser(subparsers)
    return parser


def command_modules() -> list[str]:
    """Names of the subcommand modules, in --help order."""
    from . import commands

    stems = [m.name[: -len("_cmd")] for m in pkgutil.iter_modules(commands.__path__) if m.name.endswith("_cmd")]
    rank = {stem: i for i, stem in enumerate(_HELP_ORDER)}
    stems.sort(key=lambda stem: (rank.get(stem, len(rank)), stem))
    return [f"LesaNetCore.commands.{stem}_cmd" for stem in stems]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lesanet {version('LesaNetCore')}"
    except PackageNotFoundError:
        return "lesanet (source checkout)"


def main(argv: list[str] | None = None) -> int:
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LesaNetError as err:
        print(f"lesanet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lesanet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
