"""The one exception type users of LesaNetCore catch.

Every message names the argument (or file), the rule that was broken and the value that broke it, so a user can
fix the input without reading the source: ``box_ijk: x1 must be < x2, but got x1=40, x2=12``.
"""

from __future__ import annotations


class LesaNetError(ValueError):
    """Invalid input or state, with a message that names argument, rule and value."""


def invalid(argument: str, rule: str, value: object) -> LesaNetError:
    """Builds the standard error message ``{argument}: {rule}, but got {value!r}``.

    Example:
        >>> print(invalid("--lesions", "must be a positive integer", -3))
        --lesions: must be a positive integer, but got -3
    """
    return LesaNetError(f"{argument}: {rule}, but got {value!r}")
