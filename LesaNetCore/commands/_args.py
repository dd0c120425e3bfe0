"""Argument parsing shared by several subcommands."""

from __future__ import annotations

import math

from ..errors import invalid


def parse_box(argument: str, text: str) -> tuple[float, ...]:
    """``"1,2,3,4,5"`` (``--box-ijk`` / ``--box-lps``) -> five finite floats; a clear error otherwise.

    Example:
        >>> parse_box("--box-lps", "-120.5, 30, -100, 52.5, 7")
        (-120.5, 30.0, -100.0, 52.5, 7.0)
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as err:
        raise invalid(argument, "must be five comma-separated numbers", text) from err
    if len(values) != 5:
        raise invalid(argument, "must be five comma-separated numbers", text)
    if not all(math.isfinite(v) for v in values):
        raise invalid(argument, "must hold finite numbers (no nan or inf)", text)
    return values
