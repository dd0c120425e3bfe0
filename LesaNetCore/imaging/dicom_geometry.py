"""Stacking DICOM frames into a volume grid: order, duplicates, missing slices, uneven spacing and gantry tilt.

The geometry comes from Image Position / Orientation (Patient) and Pixel Spacing only, never from file names,
Instance Number or Slice Location, which archives rewrite freely. The rules, each stated where it is applied:

* order: slices are sorted by their position along the image normal;
* duplicates: two frames less than 0.01 mm apart are the same position; the first (by Instance Number, then
  file) is kept, and the caller checks the dropped one holds the same pixels (else the series is refused);
* spacing: when every slice lies within 5 % of a spacing of a uniform grid through the first and last slice,
  the frames are the grid's slices; otherwise the series is resampled onto a uniform grid at its spacing (the most
  common gap between slices), each grid slice being a source frame (when one lies within 5 % of it) or linearly
  interpolated between its two neighbours; a gap wider than 3 spacings (more than two missing slices in a row) is
  refused;
* gantry tilt: slices whose positions advance along a line that is not the image normal keep their pixels and
  form a sheared grid (the K axis follows the line), so every slice stays its source image and LesaNet's patch
  is still resampled on axial planes; a tilt beyond 45 degrees, or positions that leave the line by more than
  0.1 pixel, is refused;
* a single frame is a volume of one slice whose thickness is Slice Thickness (1 mm when absent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import LesaNetError
from .dicom_frames import FrameRef

_SAME_POSITION_MM = 0.01
_ON_GRID_FRACTION = 0.05
_MAX_GAP_RATIO = 3.0
_MAX_TILT_DEGREES = 45.0
_OFF_LINE_PIXELS = 0.1
# Below this in-plane drift from the first to the last slice the stack counts as orthogonal (no tilt).
_TILT_DRIFT_MM = 0.01


@dataclass(frozen=True)
class GridSlice:
    """How one K slice of the grid is made: from one frame, or between two (``weight`` of the upper one)."""

    frame: int | None = None
    lower: int | None = None
    upper: int | None = None
    weight: float = 0.0


@dataclass(frozen=True)
class StackGeometry:
    """The grid of a stack of frames: how each slice is made, its LPS geometry, and what was done to get it.

    Attributes:
        slices: one :class:`GridSlice` per K slice, K increasing along the image normal.
        spacing: (along I, along J, along K) mm.
        origin: LPS mm of voxel (0, 0, 0) (the first slice's Image Position).
        direction: 3x3, columns the I, J and K directions (K sheared for a tilted gantry).
        duplicates: (kept, dropped) frame indices of duplicated positions, for the caller's pixel check.
        warnings: what the rules changed (duplicates dropped, resampling, tilt, single slice).
    """

    slices: tuple[GridSlice, ...]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    duplicates: tuple[tuple[int, int], ...]
    warnings: tuple[str, ...]


def stack_frames(frames: Sequence[FrameRef], source: str) -> StackGeometry:
    """Applies the rules of the module docstring to ``frames`` (one series).

    Raises:
        LesaNetError: a frame without position, orientation or spacing; frames of different sizes, orientations
            or pixel spacings; duplicate positions that are not duplicates in-plane; a gap too wide to fill; a
            tilt too large or positions off one line.
    """
    check_placement(frames)
    first = frames[0]
    normal = first.normal
    positions = np.array([f.position for f in frames], dtype=float)
    heights = positions @ normal
    order = sorted(range(len(frames)), key=lambda n: (heights[n], frames[n].instance_number or 0,
                                                       frames[n].path, frames[n].frame_number or 0))
    kept, duplicates = _drop_duplicates(order, positions, heights, frames)
    warnings = []
    if duplicates:
        warnings.append(f"{len(duplicates)} duplicated slice position(s) dropped (same position and pixels), "
                        f"e.g. {frames[duplicates[0][1]].describe()} duplicates {frames[duplicates[0][0]].describe()}")
    row_dir, col_dir = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
    in_plane = (float(first.pixel_spacing[1]), float(first.pixel_spacing[0]))
    if len(kept) == 1:
        thickness = first.thickness or 1.0
        warnings.append(f"a single slice: its missing neighbours are the slice repeated (LesaNet's -2 / +2 mm "
                        f"channels equal the key slice), so labels that need 3D context are less reliable; slice "
                        f"thickness {thickness:g} mm")
        direction = np.stack([row_dir, col_dir, normal], axis=1)
        return StackGeometry((GridSlice(frame=kept[0]),), (*in_plane, thickness),
                             tuple(positions[kept[0]]), direction, tuple(duplicates), tuple(warnings))
    h = heights[kept]
    p = positions[kept]
    span = float(h[-1] - h[0])
    line = (p[-1] - p[0]) / span  # LPS displacement per mm along the normal; line @ normal == 1
    drift = line - normal
    axis, tilt_warning = _stack_axis(normal, line, drift, span, p, h, frames, kept, min(in_plane))
    if tilt_warning:
        warnings.append(tilt_warning)
    per_height = float(np.linalg.norm(line)) if tilt_warning else 1.0  # mm along the K axis per mm of height
    slices, step, resample_warning = _grid(h, kept, frames, source)
    if resample_warning:
        warnings.append(resample_warning)
    direction = np.stack([row_dir, col_dir, axis], axis=1)
    return StackGeometry(tuple(slices), (*in_plane, step * per_height), tuple(p[0]), direction,
                         tuple(duplicates), tuple(warnings))


def check_placement(frames: Sequence[FrameRef]) -> None:
    """Every frame can be placed in 3D, and all share one size, orientation and pixel spacing (else an error
    naming the frame and what it lacks)."""
    for frame in frames:
        missing = [name for name, value in (("ImagePositionPatient", frame.position),
                                            ("ImageOrientationPatient", frame.orientation),
                                            ("PixelSpacing", frame.pixel_spacing)) if value is None]
        if missing:
            raise LesaNetError(f"{frame.describe()}: must have ImagePositionPatient, ImageOrientationPatient and "
                               f"PixelSpacing to place the slice in 3D, but {', '.join(missing)} missing")
    first = frames[0]
    for frame in frames[1:]:
        if (frame.rows, frame.columns) != (first.rows, first.columns):
            raise LesaNetError(f"{frame.describe()}: slices of one series must share one size, but got "
                               f"{frame.rows}x{frame.columns} here and {first.rows}x{first.columns} in "
                               f"{first.describe()}")
        if np.max(np.abs(np.subtract(frame.orientation, first.orientation))) > 1e-3:
            raise LesaNetError(f"{frame.describe()}: slices of one series must share one orientation, but got "
                               f"{list(frame.orientation)} here and {list(first.orientation)} in {first.describe()}")
        if not np.allclose(frame.pixel_spacing, first.pixel_spacing, rtol=1e-3):
            raise LesaNetError(f"{frame.describe()}: slices of one series must share one pixel spacing, but got "
                               f"{list(frame.pixel_spacing)} here and {list(first.pixel_spacing)} in "
                               f"{first.describe()}")


def _drop_duplicates(order, positions, heights, frames) -> tuple[list[int], list[tuple[int, int]]]:
    kept: list[int] = []
    duplicates: list[tuple[int, int]] = []
    for n in order:
        if kept and heights[n] - heights[kept[-1]] < _SAME_POSITION_MM:
            shift = float(np.linalg.norm(positions[n] - positions[kept[-1]]))
            if shift >= _SAME_POSITION_MM:
                raise LesaNetError(f"{frames[n].describe()}: slices at the same height must be at the same "
                                   f"position, but it is {shift:.3f} mm in-plane from {frames[kept[-1]].describe()}")
            duplicates.append((kept[-1], n))
        else:
            kept.append(n)
    return kept, duplicates


def _stack_axis(normal, line, drift, span, p, h, frames, kept, pixel) -> tuple[np.ndarray, str | None]:
    """The K axis (unit) and a tilt warning, or the normal and None for an orthogonal stack."""
    residual = (p - p[0]) - np.outer(h - h[0], line)
    worst = int(np.argmax(np.linalg.norm(residual, axis=1)))
    if np.linalg.norm(residual[worst]) > max(_OFF_LINE_PIXELS * pixel, _SAME_POSITION_MM):
        raise LesaNetError(f"{frames[kept[worst]].describe()}: slice positions must advance along one line, but "
                           f"this slice is {np.linalg.norm(residual[worst]):.3f} mm off the line through the first "
                           f"and last slice (allowed {_OFF_LINE_PIXELS:g} pixel)")
    if float(np.linalg.norm(drift)) * span < _TILT_DRIFT_MM:
        return normal, None
    tilt = float(np.degrees(np.arctan(np.linalg.norm(drift))))
    if tilt > _MAX_TILT_DEGREES:
        raise LesaNetError(f"{frames[kept[0]].describe()}: a gantry tilt must be at most {_MAX_TILT_DEGREES:g} "
                           f"degrees to be corrected, but the slices advance at {tilt:.1f} degrees from their normal")
    return line / np.linalg.norm(line), (
        f"gantry tilt of {tilt:.2f} degrees: the slices are kept as acquired on a sheared grid and LesaNet's "
        "patch is resampled on axial planes")


def _grid(h: np.ndarray, kept: list[int], frames, source: str) -> tuple[list[GridSlice], float, str | None]:
    span = float(h[-1] - h[0])
    step = span / (len(h) - 1)
    uniform = np.abs(h - (h[0] + step * np.arange(len(h)))) <= _ON_GRID_FRACTION * step
    if uniform.all():
        return [GridSlice(frame=n) for n in kept], step, None
    gaps = np.diff(h)
    nominal = _common_gap(gaps)
    widest = int(np.argmax(gaps))
    if gaps[widest] > _MAX_GAP_RATIO * nominal + 1e-3:
        raise LesaNetError(
            f"{source}: gaps between slices must be at most {_MAX_GAP_RATIO:g} times the series' spacing "
            f"({nominal:.3f} mm) to be filled by interpolation, but {frames[kept[widest]].describe()} and "
            f"{frames[kept[widest + 1]].describe()} are {gaps[widest]:.3f} mm apart (a block of slices is missing)")
    count = int(round(span / nominal)) + 1
    step = span / (count - 1)
    slices, filled = [], []
    for k in range(count):
        target = h[0] + k * step
        nearest = int(np.argmin(np.abs(h - target)))
        if abs(h[nearest] - target) <= _ON_GRID_FRACTION * step:
            slices.append(GridSlice(frame=kept[nearest]))
            continue
        upper = int(np.searchsorted(h, target))
        weight = float((target - h[upper - 1]) / (h[upper] - h[upper - 1]))
        slices.append(GridSlice(lower=kept[upper - 1], upper=kept[upper], weight=weight))
        filled.append(k)
    distinct = sorted({round(float(g), 3) for g in gaps})
    return slices, step, (
        f"uneven slice spacing (gaps {distinct[:6]} mm): resampled onto a uniform grid of {count} slices at "
        f"{step:.3f} mm, {len(filled)} slice(s) interpolated between their neighbours (K = {filled[:10]})")


def _common_gap(gaps: np.ndarray) -> float:
    """The series' spacing: the most common gap (gaps within 5 % count as one), the smaller on a tie.

    Example:
        >>> _common_gap(np.array([2.5, 5.0]))  # one slice missing of three
        2.5
        >>> _common_gap(np.array([3.0, 3.0, 6.0, 3.0, 4.5, 4.5]))
        3.0
    """
    same = np.abs(gaps[:, None] - gaps[None, :]) <= _ON_GRID_FRACTION * gaps[:, None]
    counts = same.sum(axis=1)
    best = min(range(len(gaps)), key=lambda n: (-counts[n], gaps[n]))
    return float(np.mean(gaps[same[best]]))


__all__ = ["GridSlice", "StackGeometry", "stack_frames"]
