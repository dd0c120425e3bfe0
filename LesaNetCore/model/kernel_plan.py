"""Which convolution algorithm each 3 x 3 layer shape runs on this machine: direct, F(2x2, 3x3) or F(4x4, 3x3).

A :class:`KernelPlan` is data: a choice per layer shape ``(batch, C_in, C_out, H, W)``, measured by
:func:`.kernels.tune` on the machine that uses it. Shapes are the key (not layer names) because speed depends on
the shape only, so the full-size and the demo network, or the same network at another batch, share what was
measured. A shape nobody measured runs direct convolution, the safe default: oneDNN's direct kernels are near
the machine's peak everywhere, while Winograd was measured 30 % slower than direct on one CPU and 20 % faster on
another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import invalid

ALGORITHMS = ("direct", "F2", "F4")
TILES = {"direct": None, "F2": 2, "F4": 4}

LayerShape = tuple[int, int, int, int, int]  # (batch, C_in, C_out, H, W) of a layer's input and output channels


def shape_text(shape: LayerShape) -> str:
    """``"b1 256->256 30x30"``: the cache's and the tables' name of a layer shape."""
    batch, c_in, c_out, height, width = shape
    return f"b{batch} {c_in}->{c_out} {height}x{width}"


def parse_shape(text: str) -> LayerShape:
    """Inverse of :func:`shape_text`."""
    try:
        batch, channels, size = text.split()
        c_in, c_out = channels.split("->")
        height, width = size.split("x")
        if not batch.startswith("b"):
            raise ValueError(text)
        return int(batch[1:]), int(c_in), int(c_out), int(height), int(width)
    except ValueError as err:
        raise invalid("layer shape", "must read 'bB CIN->COUT HxW'", text) from err


@dataclass(frozen=True)
class KernelPlan:
    """Algorithm per layer shape; shapes without a measurement run ``default``.

    A batch that was not measured for a layer takes the choice of the measured batch nearest to it on a log
    scale (ties to the smaller): Winograd's gain grows with the tiles each transformed weight serves, so a choice
    measured at 8 fits 6 better than one measured at 1.

    Attributes:
        choices: ``(batch, C_in, C_out, H, W) -> "direct" | "F2" | "F4"``.
        default: what unmeasured shapes run; ``"direct"`` except in plans that force one algorithm everywhere
            (:meth:`forced`, for numerics checks and the per-layer timing tool).

    Example:
        >>> plan = KernelPlan({(1, 256, 256, 30, 30): "F4", (8, 256, 256, 30, 30): "F2"})
        >>> [plan.algorithm(b, 256, 256, 30, 30) for b in (1, 2, 3, 8, 32)], plan.algorithm(1, 64, 64, 120, 120)
        (['F4', 'F4', 'F2', 'F2', 'F2'], 'direct')
    """

    choices: Mapping[LayerShape, str] = field(default_factory=dict)
    default: str = "direct"

    def __post_init__(self) -> None:
        if self.default not in ALGORITHMS:
            raise invalid("default", f"must be one of {ALGORITHMS}", self.default)
        by_layer: dict[tuple[int, int, int, int], list[tuple[int, str]]] = {}
        for shape, algorithm in self.choices.items():
            if algorithm not in ALGORITHMS:
                raise invalid(f"choices[{shape_text(shape)}]", f"must be one of {ALGORITHMS}", algorithm)
            if len(shape) != 5 or min(shape) < 1:
                raise invalid("choices", "must be keyed by (batch, C_in, C_out, H, W) positive integers", shape)
            by_layer.setdefault(tuple(shape[1:]), []).append((shape[0], algorithm))
        object.__setattr__(self, "choices", dict(self.choices))
        object.__setattr__(self, "_by_layer", {k: sorted(v) for k, v in by_layer.items()})
        object.__setattr__(self, "_lookups", {})

    @classmethod
    def forced(cls, algorithm: str) -> KernelPlan:
        """A plan that runs ``algorithm`` on every eligible layer, whatever was measured."""
        return cls({}, default=algorithm)

    def algorithm(self, batch: int, c_in: int, c_out: int, height: int, width: int) -> str:
        """The algorithm for one layer call (see the class docstring for unmeasured batches)."""
        key = (batch, c_in, c_out, height, width)
        found = self._lookups.get(key)
        if found is None:
            measured = self._by_layer.get(key[1:])
            if not measured:
                found = self.default
            else:
                found = min(measured, key=lambda m: (abs(math.log(m[0]) - math.log(batch)), m[0]))[1]
            self._lookups[key] = found
        return found

    def batches(self) -> list[int]:
        """The batch sizes this plan has measurements for."""
        return sorted({shape[0] for shape in self.choices})

    def covers(self, shapes: list[LayerShape]) -> bool:
        """Whether every one of ``shapes`` has a measurement of its own (same batch)."""
        return all(tuple(shape) in self.choices for shape in shapes)

    def merged(self, other: KernelPlan) -> KernelPlan:
        """This plan with ``other``'s choices added (``other`` wins where both measured a shape)."""
        return KernelPlan({**self.choices, **other.choices}, default=self.default)

    def winograd_count(self) -> int:
        """How many measured shapes chose a Winograd tile."""
        return sum(algorithm != "direct" for algorithm in self.choices.values())
