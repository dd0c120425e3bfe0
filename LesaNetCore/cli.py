"""The ``lesanet`` command.

Each subcommand lives in its own module under ``LesaNetCore.commands`` with ``add_parser(subparsers)``; heavy
libraries (torch, SimpleITK) are imported inside the command functions so ``lesanet --help`` stays instant.

A failure never ends in a Python traceback on the terminal: :func:`main` turns a ``LesaNetError`` into its own
one-line message and any other exception into one line naming the command, its input and the cause, with the
traceback written to a log file whose path the line gives (``--debug`` prints it too). Exit status 2 is a usage
error (the command line itself: argparse's own errors and every error naming an option, such as an output that
exists without ``--overwrite``), 1 an input or run-time error, 130 an interrupt. What the library logs (the
DICOM reader's choice of series, its warnings) is printed as ``lesanet COMMAND: note: ...`` lines on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import logging
import os
import pkgutil
import re
import sys
import tempfile
import traceback
from pathlib import Path

from .errors import LesaNetError

# Every ``LesaNetCore/commands/*_cmd.py`` is a subcommand module; these come first in --help, the rest follow
# in name order. Discovery keeps command modules independent of each other: adding one edits no shared list.
_HELP_ORDER = ("demo", "annotate", "mine", "patch", "synth", "train", "evaluate", "index", "ontology")

_NEGATIVE_VALUE = re.compile(r"^-\d|^-\.\d")
# Arguments that name a command's input, in the order the one-line error looks for them.
_INPUT_ARGUMENTS = ("volume", "ckpt", "dl_root", "input", "data", "model", "index", "xlsx", "ontology")
# Import names of the optional packages and what installs them; every other import is a requirement.
_OPTIONAL_PACKAGES = {
    "faiss": "approximate search is optional, pip install 'LesaNetCore[ann]'",
    "pytest": "the tests are optional, pip install 'LesaNetCore[dev]'",
}
_PIP_NAMES = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml"}
_EXIT_HELP = """exit status: 0 done; 1 an input or run-time error (one line on stderr; for an unexpected error
the line names the log file holding the traceback); 2 a usage error (the command line itself: an unknown
or malformed option, an output that exists without --overwrite); 130 interrupted.
--debug (anywhere on the command line) also prints the traceback of an unexpected error."""


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
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
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
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _NoteHandler(args.command)
    package_logger = logging.getLogger("LesaNetCore")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        return int(args.func(args) or 0)
    except LesaNetError as err:
        print(f"lesanet {args.command}: error: {err}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        return 2 if is_usage_error(err, _option_names(parser, args.command)) else 1
    except KeyboardInterrupt:
        print(f"lesanet {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        print(f"lesanet {args.command}: error: {missing_package_message(err)}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        return 1
    except Exception as err:  # the one place an unexpected failure becomes a line instead of a traceback
        log = _write_log(args.command, argv, err)
        where = f" in {log}" if log else " (no log file could be written)"
        print(f"lesanet {args.command}: error: unexpected {type(err).__name__} on {describe_input(args)}: "
              f"{_cause(err)} (traceback{where}; --debug prints it)", file=sys.stderr)
        if debug:
            traceback.print_exc()
        return 1
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


def is_usage_error(err: LesaNetError, options: set[str] = frozenset()) -> bool:
    """An error about the command line itself: its message starts by naming an option, as ``--json: ...`` or by
    the option's Python name (``box_ijk: ...`` for ``--box-ijk``), so the user fixes the command line.

    Example:
        >>> is_usage_error(LesaNetError("--box-ijk: must be five numbers, but got '1,2'"))
        True
        >>> is_usage_error(LesaNetError("box_ijk: must not be inverted, but got (4, 1, 2, 3, 0)"), {"box_ijk"})
        True
        >>> is_usage_error(LesaNetError("ct.nii.gz: must be a 3D volume, but got a 2D image"), {"box_ijk"})
        False
    """
    text = str(err)
    named = text.split(":", 1)[0].split(" (")[0]  # "series_uid (--series): ..." names series_uid
    return text.startswith("--") or named in options


def _option_names(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """The destination names of ``command``'s options (and of its own subcommands' options)."""
    names: set[str] = set()
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(sub for name, sub in action.choices.items() if current is not parser or name == command)
            elif action.option_strings:
                names.add(action.dest)
    return names - {"help", "version", "debug"}


def describe_input(args: argparse.Namespace) -> str:
    """The command's input as the error line names it: the first input-like argument that was given.

    Example:
        >>> describe_input(argparse.Namespace(volume="ct/", model=None))
        "'ct/'"
        >>> describe_input(argparse.Namespace(volume=["a.dcm", "b.dcm", "c.dcm"]))
        "'a.dcm' and 2 more"
        >>> describe_input(argparse.Namespace(out="x"))
        'no input file'
    """
    for name in _INPUT_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, list | tuple):
            if value:
                return repr(str(value[0])) + (f" and {len(value) - 1} more" if len(value) > 1 else "")
        elif value not in (None, ""):
            return repr(str(value))
    return "no input file"


def missing_package_message(err: ModuleNotFoundError) -> str:
    """What to install for a missing import: the extra that brings an optional package, else the requirement.

    Example:
        >>> missing_package_message(ModuleNotFoundError("No module named 'faiss'", name="faiss"))
        "the Python package 'faiss' is missing: approximate search is optional, pip install 'LesaNetCore[ann]'"
    """
    name = (err.name or "").split(".")[0] or "?"
    if name in _OPTIONAL_PACKAGES:
        return f"the Python package {name!r} is missing: {_OPTIONAL_PACKAGES[name]}"
    return (f"the Python package {name!r} is missing, although LesaNetCore requires it (an install with --no-deps, "
            f"or a broken environment): pip install {_PIP_NAMES.get(name, name)}, or reinstall LesaNetCore")


class _NoteHandler(logging.Handler):
    """Prints the package's log records as ``lesanet COMMAND: note: ...`` (INFO) or ``warning: ...`` lines."""

    def __init__(self, command: str) -> None:
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        kind = "note" if record.levelno < logging.WARNING else "warning"
        print(f"lesanet {self.command}: {kind}: {record.getMessage()}", file=sys.stderr)


def _cause(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:400] + "...") if len(text) > 400 else (text or "(no message)")


def _log_folder() -> Path:
    if os.environ.get("LESANET_LOG_DIR"):
        return Path(os.environ["LESANET_LOG_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lesanet" / "logs"


def _write_log(command: str, argv: list[str], err: BaseException) -> Path | None:
    """Writes the traceback of ``err`` to a new log file; its path, or None when no folder is writable."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"lesanet {' '.join(argv)}\n{_version()}, Python {sys.version.split()[0]}\n\n"
            + "".join(traceback.format_exception(type(err), err, err.__traceback__)))
    for folder in (_log_folder(), Path(tempfile.gettempdir()) / "lesanet-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"lesanet-{command}-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


if __name__ == "__main__":
    sys.exit(main())
