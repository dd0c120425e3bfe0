"""RECIST measurements as lesion input: the long axis (and optional short axis) -> the lesion box.

Radiologists measure lesions with RECIST diameters rather than boxes. DeepLesion derived every box it ships
from such a measurement: the tight box around the end points of the diameters, padded by 5 pixels on each side
in the key slice's pixel grid (checked on the real ``DL_info.csv`` rows: ``Bounding_boxes`` equals the
``Measurement_coordinates`` box padded by 5.000 +- 0.0005 pixels on all four sides). The same rule here turns a
measurement into the box LesaNet was trained on.

A measurement is a :class:`Recist`: 2 end points (long axis) or 4 (long axis, then short axis) as continuous
voxel indices (i, j) on the key slice k, the order of DeepLesion's ``Measurement_coordinates``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import invalid
from .volume import Volume

RECIST_PADDING_PX = 5.0
"""Pixels added on each side of the diameters' tight box (DeepLesion's rule)."""


@dataclass(frozen=True)
class Recist:
    """A RECIST measurement on one axial slice, in stored voxel indices.

    Attributes:
        points_ij: (2, 2) or (4, 2) end points (i, j): long axis first, then the optional short axis.
        key_slice: K index of the slice measured on.
    """

    points_ij: tuple[tuple[float, float], ...]
    key_slice: int

    @property
    def long_axis_px(self) -> float:
        (a, b) = self.points_ij[:2]
        return float(np.hypot(b[0] - a[0], b[1] - a[1]))

    @property
    def short_axis_px(self) -> float | None:
        if len(self.points_ij) < 4:
            return None
        (a, b) = self.points_ij[2:4]
        return float(np.hypot(b[0] - a[0], b[1] - a[1]))

    def box_ijk(self, padding: float = RECIST_PADDING_PX,
                size_ijk: tuple[int, int, int] | None = None) -> tuple[float, float, float, float, float]:
        """(i1, j1, i2, j2, k): the tight box around the end points, ``padding`` pixels wider on each side.

        With ``size_ijk`` the padded box is clipped to the volume's columns and rows (a lesion at the border).
        """
        points = np.asarray(self.points_ij, dtype=np.float64)
        low, high = points.min(axis=0) - padding, points.max(axis=0) + padding
        if size_ijk is not None:
            limits = np.asarray(size_ijk[:2], dtype=np.float64) - 1
            low, high = np.clip(low, 0, limits), np.clip(high, 0, limits)
        return (float(low[0]), float(low[1]), float(high[0]), float(high[1]), float(self.key_slice))


def recist_from_values(argument: str, values: Sequence[float]) -> Recist:
    """A measurement from flat numbers ``i1, j1, i2, j2[, i3, j3, i4, j4], k`` (what ``--recist-ijk`` takes).

    Raises:
        LesaNetError: naming ``argument``: a wrong count, a fractional or negative slice, a zero-length axis or
            a short axis longer than the long one.

    Example:
        >>> recist_from_values("recist", [233.537, 95.0204, 234.057, 106.977, 109]).box_ijk()[:2]
        (228.537, 90.0204)
    """
    values = [float(v) for v in values]
    if len(values) not in (5, 9) or not all(np.isfinite(values)):
        raise invalid(argument, "must be 5 or 9 finite numbers: the long axis' two end points, optionally the "
                      "short axis' two, then the slice", values)
    k = values[-1]
    if k != round(k) or k < 0:
        raise invalid(argument, "must end with a whole, non-negative slice index", k)
    points = tuple((values[n], values[n + 1]) for n in range(0, len(values) - 1, 2))
    return _checked(argument, Recist(points, int(k)))


def recist_from_lps(argument: str, volume: Volume, points_lps: Sequence[Sequence[float]]) -> Recist:
    """A measurement from 2 or 4 end points in LPS millimetres (x, y, z) on ``volume``.

    The points are mapped to the volume's continuous indices; their mean K, rounded, is the key slice. The
    volume must be stored as axial slices, as DeepLesion's were, so that the padding is in its pixel grid.

    Raises:
        LesaNetError: naming ``argument``: not 2 or 4 points, points not on one slice, a non-axial volume.
    """
    points = np.asarray(points_lps, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] not in (2, 4) or points.shape[1] != 3 or not np.isfinite(points).all():
        raise invalid(argument, "must be 2 or 4 finite LPS points (x, y, z)", np.asarray(points_lps).tolist())
    if int(np.argmax(np.abs(volume.direction[2, :]))) != 2:
        raise invalid(argument, "needs a volume stored as axial slices (its K axis closest to z); draw a box "
                      "instead", volume.source or "volume")
    ijk = volume.lps_to_ijk(points)
    spread = float(np.ptp(ijk[:, 2]))
    if spread > 0.5:
        raise invalid(argument, "end points must lie on one slice (their K indices spread at most 0.5)",
                      np.round(ijk[:, 2], 2).tolist())
    k = int(np.round(ijk[:, 2].mean()))
    return _checked(argument, Recist(tuple((float(i), float(j)) for i, j in ijk[:, :2]), k))


def _checked(argument: str, recist: Recist) -> Recist:
    if recist.long_axis_px <= 0:
        raise invalid(argument, "long axis must have positive length", recist.points_ij[:2])
    short = recist.short_axis_px
    if short is not None:
        if short <= 0:
            raise invalid(argument, "short axis must have positive length", recist.points_ij[2:])
        # Equal axes are common (DeepLesion rows reach a ratio of 1.0002 by rounding); a clearly longer short
        # axis means the two were swapped.
        if short > recist.long_axis_px * 1.01:
            raise invalid(argument, f"short axis ({short:.2f} px) must not be longer than the long axis "
                          f"({recist.long_axis_px:.2f} px); give the long axis first", recist.points_ij)
    return recist
