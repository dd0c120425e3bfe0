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
    values = parse_numbers(argument, text, "must be five comma-separated numbers")
    if len(values) != 5:
        raise invalid(argument, "must be five comma-separated numbers", text)
    return values


def parse_numbers(argument: str, text: str, rule: str = "must be comma-separated numbers") -> tuple[float, ...]:
    """``"1, 2.5, -3"`` -> finite floats; a clear error naming ``argument`` otherwise.

    Example:
        >>> parse_numbers("--recist-ijk", "233.5,95,234,107,109")
        (233.5, 95.0, 234.0, 107.0, 109.0)
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as err:
        raise invalid(argument, rule, text) from err
    if not all(math.isfinite(v) for v in values):
        raise invalid(argument, "must hold finite numbers (no nan or inf)", text)
    return values
