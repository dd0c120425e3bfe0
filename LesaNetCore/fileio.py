"""Atomic, non-clobbering output files.

Users lose nothing: an output is written to a temporary file in the target folder and renamed into place only
when complete, so an interrupted run never leaves a half-written file, and an existing file is replaced only when
the caller says so (``overwrite=True``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .errors import LesaNetError

T = TypeVar("T")


def check_writable(path: str | os.PathLike, argument: str, overwrite: bool = False) -> Path:
    """Checks up front that ``path`` can be written, before any expensive work starts.

    Raises:
        LesaNetError: the file exists and ``overwrite`` is false, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise LesaNetError(f"{argument}: refusing to overwrite an existing file (pass --overwrite), but got {str(path)!r}")
    if path.is_dir():
        raise LesaNetError(f"{argument}: must be a file path, not a folder, but got {str(path)!r}")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LesaNetError(f"{argument}: its folder cannot be created ({err.strerror}), but got {str(path)!r}") from err
    if not os.access(folder, os.W_OK):
        raise LesaNetError(f"{argument}: its folder must be writable, but got {str(folder)!r}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, argument: str = "output", overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` only if the block succeeds.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = check_writable(path, argument, overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; outputs get the usual permissions
    try:
        yield tmp
        if path.exists() and not overwrite:
            raise LesaNetError(f"{argument}: the file appeared while it was being written; refusing to overwrite {str(path)!r}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str, argument: str = "output", overwrite: bool = False) -> Path:
    """Writes ``text`` (UTF-8) atomically; see :func:`atomic_path`."""
    with atomic_path(path, argument, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json_lines(path: str | os.PathLike, parse: Callable[[Any], T], expected: str) -> Iterator[tuple[int, T]]:
    """``(line number, parse(record))`` for each non-blank line of a JSON-lines file, in order.

    A line that is not JSON, or that ``parse`` rejects with KeyError, TypeError or ValueError, stops the read with
    an error naming the file, the line number, what was ``expected`` and the start of the line.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = parse(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise LesaNetError(f"{path.name} line {number}: must be {expected}, but got "
                                   f"{line.strip()[:80]!r}") from err
            yield number, value
