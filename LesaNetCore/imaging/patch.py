"""LesaNet's input patch: three 2 mm-spaced axial channels, 120 x 120 at 1 mm/pixel, around the lesion box.

The patch is always in DeepLesion's axial display orientation, whatever the volume's direction matrix:

* columns run from the patient's right to left (+x in LPS), rows from anterior to posterior (+y in LPS);
* channels are [-2 mm, 0, +2 mm] from the box centre along z, i.e. inferior -> superior (increasing LPS z).

It is made by sampling the volume at the LPS position of every patch pixel, mapped to continuous voxel indices
with :meth:`Volume.lps_to_ijk` (for an axis-aligned volume one axis at a time, with the same result).
Interpolation follows the reference code's order: linear along the stored slice axis K in HU (its neighbour-slice
interpolation), then the HU window [-1024, 3071] -> grey levels [0, 255] (clipped), then bilinear in-plane (its
image resize). Indices are clamped to the volume, which replicates the border in-plane and repeats the end slice
along z. A RAS-stored NIfTI, a reversed slice order or a volume with permuted axes therefore gives the same patch
as the LPS original.

Unlike the reference, which rounds the box centre to a whole pixel, the patch is centred exactly on the box
centre: the centre lies between pixels 59 and 60 on both axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LesaNetError, invalid
from .volume import Volume

PATCH_SIZE = 120
PIXEL_MM = 1.0
CHANNEL_OFFSETS_MM = (-2.0, 0.0, 2.0)
HU_WINDOW = (-1024.0, 3071.0)
PIXEL_MEAN = 50.0
PIXEL_SCALE = 255.0

_HALF = (PATCH_SIZE - 1) / 2.0
# A box corner may sit anywhere on its voxel, up to its outer face (index - 0.5 .. index + 0.5).
_EDGE = 0.5


@dataclass(frozen=True, eq=False)
class Patch:
    """One lesion's LesaNet input before normalisation.

    Attributes:
        image: float32 (3, 120, 120) grey levels 0-255 of the window [-1024, 3071] HU; channels at -2, 0, +2 mm
            along LPS z (inferior -> superior); columns along +x (patient right -> left), rows along +y
            (anterior -> posterior).
        box: float32 (x1, y1, x2, y2) of the lesion in patch pixels (pixel-centre coordinates, 0-based). A box
            larger than the 120 mm field is clipped to the patch (the reference crops a fixed 120 mm field).
        center_lps: the LPS millimetres of the box centre on the key slice, the centre of the patch.
        key_slice: K index (as stored) of the key slice.
        box_ijk: (i1, j1, i2, j2) of the box on the key slice, in stored voxel indices.
    """

    image: np.ndarray
    box: np.ndarray
    center_lps: np.ndarray
    key_slice: int
    box_ijk: tuple[float, float, float, float]


def window_hu(hu: np.ndarray) -> np.ndarray:
    """HU -> grey levels: the window [-1024, 3071] mapped linearly to [0, 255], clipped (float32)."""
    low, high = HU_WINDOW
    grey = (np.asarray(hu, dtype=np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(grey, 0.0, 255.0).astype(np.float32, copy=False)


def display_window(grey: np.ndarray, hu_window: tuple[float, float] = (-160.0, 240.0)) -> np.ndarray:
    """Patch grey levels (window [-1024, 3071]) -> uint8 in a viewing window (default soft tissue, HU).

    The model's wide window leaves soft tissue within ~25 grey levels; people look at lesions in a narrow one.

    Example:
        >>> display_window(window_hu(np.array([-500.0, -160.0, 240.0, 900.0]))).tolist()
        [0, 0, 255, 255]
    """
    low, high = HU_WINDOW
    hu = np.asarray(grey, dtype=np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
    lo, hi = hu_window
    return np.clip(np.rint((hu - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def normalize_patch(image: np.ndarray) -> np.ndarray:
    """The model input: ``(image - 50) / 255`` as float32, as the reference subtracts its pixel mean."""
    return ((np.asarray(image, dtype=np.float32) - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_SCALE)).astype(
        np.float32, copy=False
    )


def extract_patch(volume: Volume, *, box_ijk=None, box_lps=None) -> Patch:
    """Cuts the LesaNet patch around a lesion box given in voxel indices or in LPS millimetres.

    Args:
        volume: the CT.
        box_ijk: (i1, j1, i2, j2, k): stored voxel indices (I = column, J = row), corners inclusive, on slice k.
            Corners may be fractional (DeepLesion boxes are); k must be a whole slice index. Needs a volume stored
            as axial slices (K axis closest to z); use ``box_lps`` otherwise.
        box_lps: (x1, y1, x2, y2, z): LPS millimetres on the axial plane at height z.

    Exactly one of the two is given. The box must have positive width and height and lie inside the volume.

    Raises:
        LesaNetError: naming the argument, the rule and the value.
    """
    if (box_ijk is None) == (box_lps is None):
        raise LesaNetError(
            "box_ijk/box_lps: exactly one must be given, but got "
            f"{'both' if box_ijk is not None else 'neither'}"
        )
    if box_ijk is not None:
        corners_lps, key_slice, box_ij = _corners_from_ijk(volume, box_ijk)
    else:
        corners_lps, key_slice, box_ij = _corners_from_lps(volume, box_lps)
    x1, y1 = corners_lps[:, 0].min(), corners_lps[:, 1].min()
    x2, y2 = corners_lps[:, 0].max(), corners_lps[:, 1].max()
    center = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0, corners_lps[:, 2].mean()])
    image = sample_patch(volume, center)
    box = np.array(
        [_HALF + (x1 - center[0]) / PIXEL_MM, _HALF + (y1 - center[1]) / PIXEL_MM,
         _HALF + (x2 - center[0]) / PIXEL_MM, _HALF + (y2 - center[1]) / PIXEL_MM],
    )
    box = np.clip(box, 0.0, PATCH_SIZE - 1.0).astype(np.float32)
    return Patch(image=image, box=box, center_lps=center, key_slice=key_slice, box_ijk=box_ij)


def patch_from_slices(
    slices: np.ndarray, spacing_xy: tuple[float, float], slice_interval: float, key_index: int, box_xy
) -> Patch:
    """The same preprocessing for a stack of DeepLesion axial slices (HU) around a key slice.

    The stack becomes a Volume with spacing (sx, sy, interval), zero origin and identity direction, so its
    columns are +x and rows +y as DeepLesion displays them, and the channels follow increasing slice index (the
    reference's order; DeepLesion does not record whether its slice index runs up or down the body). When the
    interval is not positive or finite, the key slice fills all three channels, as in the reference.

    Args:
        slices: (n, rows, columns) HU, contiguous slices.
        spacing_xy: in-plane millimetres per pixel (column, row).
        slice_interval: millimetres between consecutive slices.
        key_index: position of the key slice in ``slices``.
        box_xy: (x1, y1, x2, y2) 0-based pixel coordinates on the key slice.
    """
    slices = np.asarray(slices, dtype=np.float32)
    if slices.ndim != 3:
        raise invalid("slices", "must be a (slices, rows, columns) array", slices.shape)
    if not 0 <= int(key_index) < slices.shape[0] or int(key_index) != key_index:
        raise invalid("key_index", f"must be a slice position in 0..{slices.shape[0] - 1}", key_index)
    key_index = int(key_index)
    interval = float(slice_interval)
    if not (np.isfinite(interval) and interval > 0):
        slices, key_index, interval = slices[key_index : key_index + 1], 0, 1.0
    volume = Volume(slices, (float(spacing_xy[0]), float(spacing_xy[1]), interval), (0.0, 0.0, 0.0), np.eye(3),
                    source="slice stack")
    x1, y1, x2, y2 = (float(v) for v in box_xy)
    return extract_patch(volume, box_ijk=(x1, y1, x2, y2, key_index))


def sample_patch(volume: Volume, center_lps) -> np.ndarray:
    """Grey-level (3, 120, 120) patch centred on ``center_lps`` in DeepLesion display orientation.

    An axis-aligned volume (direction a signed permutation) takes a separable fast path with the same arithmetic;
    any other volume is sampled point by point.
    """
    center = np.asarray(center_lps, dtype=np.float64)
    axes = _aligned_axes(volume)
    if axes is not None:
        return _sample_aligned(volume, center, axes)
    return _sample_general(volume, center)


def _sample_general(volume: Volume, center: np.ndarray) -> np.ndarray:
    """The reference path: map every patch pixel to indices and interpolate each independently."""
    grid = _patch_grid(center)
    ijk = volume.lps_to_ijk(grid.reshape(-1, 3))
    return _interpolate(volume.voxels, ijk).reshape(len(CHANNEL_OFFSETS_MM), PATCH_SIZE, PATCH_SIZE)


# The fast path ignores how an index depends on the two LPS axes other than its own; it is taken only when that
# dependence moves the index by at most this many voxels across the whole patch (grey error <= 255 * this per
# axis), i.e. for directions that are signed permutations up to float noise.
_ALIGNED_INDEX_TOL = 1e-7
# Largest offset of a patch pixel from the centre along LPS x, y, z (millimetres).
_PATCH_EXTENT_MM = np.array([_HALF * PIXEL_MM, _HALF * PIXEL_MM, max(abs(o) for o in CHANNEL_OFFSETS_MM)])
# Patch array axis (channel, row, column) that runs along LPS x, y, z.
_PATCH_AXIS_OF_LPS = (2, 1, 0)


def _aligned_axes(volume: Volume) -> tuple[int, int, int] | None:
    """For each index axis I, J, K the LPS axis it follows, or None unless the volume is axis-aligned."""
    to_index = np.linalg.inv(volume.direction * np.asarray(volume.spacing))  # row c: d(index c)/d(LPS)
    axes = tuple(int(a) for a in np.argmax(np.abs(to_index), axis=1))
    if sorted(axes) != [0, 1, 2]:
        return None
    off_axis = np.abs(to_index) * _PATCH_EXTENT_MM
    off_axis[np.arange(3), axes] = 0.0
    if not off_axis.sum(axis=1).max() <= _ALIGNED_INDEX_TOL:
        return None
    return axes  # type: ignore[return-value]


def _sample_aligned(volume: Volume, center: np.ndarray, axes: tuple[int, int, int]) -> np.ndarray:
    """Separable version of :func:`_sample_general` for an axis-aligned volume.

    Index axis c depends only on LPS axis ``axes[c]``, hence on one patch axis: its floor index, next index and
    weight are 1-D arrays. Only the block of voxels those indices name is gathered (a slice, then ``take`` along
    each axis), and the interpolation repeats :func:`_interpolate`'s arithmetic in the same order (linear along K
    in HU, window, bilinear over I then J), so the result matches the general path up to float rounding.
    """
    steps = (np.arange(PATCH_SIZE) - _HALF) * PIXEL_MM
    offsets = (steps, steps, np.asarray(CHANNEL_OFFSETS_MM, dtype=np.float64))
    depth, rows, cols = volume.voxels.shape
    lower, upper, weight = [], [], []
    for c, n in enumerate((cols, rows, depth)):
        p = axes[c]
        line = np.repeat(center[None, :], len(offsets[p]), axis=0)
        line[:, p] = center[p] + offsets[p]  # the same LPS values as _patch_grid along that patch axis
        coord = np.clip(volume.lps_to_ijk(line)[:, c], 0.0, n - 1.0)
        low = np.minimum(np.floor(coord), max(n - 2, 0)).astype(np.intp)
        lower.append(low)
        upper.append(np.minimum(low + 1, n - 1))
        weight.append((coord - low).astype(np.float32))
    # The voxels needed: a slice of the volume spanning the indices on each axis (a view), narrowed to the
    # distinct indices where the patch skips voxels (fine spacing); positions of floor / next index within it.
    block = volume.voxels
    low_pos, up_pos = [0, 0, 0], [0, 0, 0]
    for c, array_axis in ((0, 2), (1, 1), (2, 0)):
        low, up = lower[c], upper[c]
        first, last = int(low.min()), int(up.max())
        span = [slice(None)] * 3
        span[array_axis] = slice(first, last + 1)
        block = block[tuple(span)]
        if last + 1 - first > 2 * len(low):
            values, inverse = np.unique(np.concatenate([low, up]), return_inverse=True)
            block = block.take(values - first, axis=array_axis)
            low_pos[c], up_pos[c] = inverse[: len(low)], inverse[len(low) :]
        else:
            low_pos[c], up_pos[c] = low - first, up - first
    # Linear along K in HU, then the window, on every needed (j, i): shape (len K, distinct j, distinct i).
    low_k, high_k = block.take(low_pos[2], axis=0), block.take(up_pos[2], axis=0)
    grey = window_hu(low_k + (high_k - low_k) * weight[2][:, None, None])
    rows0, rows1 = grey.take(low_pos[1], axis=1), grey.take(up_pos[1], axis=1)
    g00, g01 = rows0.take(low_pos[0], axis=2), rows0.take(up_pos[0], axis=2)
    g10, g11 = rows1.take(low_pos[0], axis=2), rows1.take(up_pos[0], axis=2)
    wi, wj = weight[0][None, None, :], weight[1][None, :, None]
    top = g00 + (g01 - g00) * wi
    bottom = g10 + (g11 - g10) * wi
    image = (top + (bottom - top) * wj).astype(np.float32, copy=False)  # (K, J, I) along their patch axes
    # Index axis K, J, I (array axes 0, 1, 2) -> patch axis (channel, row, column).
    patch_axis = [_PATCH_AXIS_OF_LPS[axes[c]] for c in (2, 1, 0)]
    return np.ascontiguousarray(np.moveaxis(image, [0, 1, 2], patch_axis))


def _patch_grid(center: np.ndarray) -> np.ndarray:
    """LPS positions (3, 120, 120, 3) of the patch pixels: channel, row (+y), column (+x)."""
    steps = (np.arange(PATCH_SIZE) - _HALF) * PIXEL_MM
    grid = np.empty((len(CHANNEL_OFFSETS_MM), PATCH_SIZE, PATCH_SIZE, 3))
    grid[..., 0] = center[0] + steps[None, None, :]
    grid[..., 1] = center[1] + steps[None, :, None]
    grid[..., 2] = center[2] + np.asarray(CHANNEL_OFFSETS_MM)[:, None, None]
    return grid


def _interpolate(voxels: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Linear along K in HU, window, then bilinear over (I, J); indices clamped to the volume (replicate)."""
    depth, rows, cols = voxels.shape
    lower, upper, weight = [], [], []
    for axis, n in enumerate((cols, rows, depth)):
        coord = np.clip(ijk[:, axis], 0.0, n - 1.0)
        low = np.minimum(np.floor(coord), max(n - 2, 0)).astype(np.intp)
        lower.append(low)
        upper.append(np.minimum(low + 1, n - 1))
        weight.append((coord - low).astype(np.float32))
    flat = voxels.reshape(-1)
    (i0, j0, k0), (i1, j1, k1), (wi, wj, wk) = lower, upper, weight
    plane = rows * cols
    base0, base1 = k0 * plane, k1 * plane

    def along_k(j: np.ndarray, i: np.ndarray) -> np.ndarray:
        offset = j * cols + i
        low, high = flat[base0 + offset], flat[base1 + offset]
        return window_hu(low + (high - low) * wk)

    g00, g01 = along_k(j0, i0), along_k(j0, i1)
    g10, g11 = along_k(j1, i0), along_k(j1, i1)
    top = g00 + (g01 - g00) * wi
    bottom = g10 + (g11 - g10) * wi
    return (top + (bottom - top) * wj).astype(np.float32, copy=False)


def _numbers(argument: str, value, count: int) -> np.ndarray:
    try:
        numbers = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise invalid(argument, f"must be {count} numbers", value) from err
    if numbers.size != count or not np.isfinite(numbers).all():
        raise invalid(argument, f"must be {count} finite numbers", value)
    return numbers


def _check_extent(argument: str, name: str, first: float, second: float, value) -> None:
    if second < first:
        raise invalid(argument, f"must not be inverted ({name}1 <= {name}2)", value)
    if second == first:
        raise invalid(argument, f"must not be empty ({name}2 > {name}1: positive width and height)", value)


def _check_inside(argument: str, ijk: np.ndarray, volume: Volume, value) -> None:
    size = np.asarray(volume.size_ijk, dtype=float)
    outside = (ijk < -_EDGE - 1e-6) | (ijk > size - 1 + _EDGE + 1e-6)
    if outside.any():
        raise invalid(
            argument,
            f"must lie inside the volume (indices within the size (I, J, K) = {volume.size_ijk}; corner indices "
            f"{np.round(ijk, 2).tolist()})",
            value,
        )


def _corners_from_ijk(volume: Volume, box_ijk) -> tuple[np.ndarray, int, tuple[float, float, float, float]]:
    i1, j1, i2, j2, k = _numbers("box_ijk", box_ijk, 5)
    value = tuple(box_ijk)
    _check_extent("box_ijk", "i", i1, i2, value)
    _check_extent("box_ijk", "j", j1, j2, value)
    if k != round(k):
        raise invalid("box_ijk", "k must be a whole slice index", value)
    axial_axis = int(np.argmax(np.abs(volume.direction[2, :])))
    if axial_axis != 2:
        raise invalid(
            "box_ijk",
            "needs a volume stored as axial slices (K axis closest to z); give box_lps for this volume, whose "
            f"direction is {np.round(volume.direction, 3).tolist()}",
            value,
        )
    corners = np.array([[i1, j1, k], [i2, j1, k], [i1, j2, k], [i2, j2, k]])
    _check_inside("box_ijk", corners, volume, value)
    if not 0 <= k <= volume.size_ijk[2] - 1:
        raise invalid("box_ijk", f"k must be a slice index in 0..{volume.size_ijk[2] - 1}", value)
    return volume.ijk_to_lps(corners), int(k), (float(i1), float(j1), float(i2), float(j2))


def _corners_from_lps(volume: Volume, box_lps) -> tuple[np.ndarray, int, tuple[float, float, float, float]]:
    x1, y1, x2, y2, z = _numbers("box_lps", box_lps, 5)
    value = tuple(box_lps)
    _check_extent("box_lps", "x", x1, x2, value)
    _check_extent("box_lps", "y", y1, y2, value)
    corners = np.array([[x1, y1, z], [x2, y1, z], [x1, y2, z], [x2, y2, z]])
    ijk = volume.lps_to_ijk(corners)
    _check_inside("box_lps", ijk, volume, value)
    center_k = float(volume.lps_to_ijk([(x1 + x2) / 2, (y1 + y2) / 2, z])[2])
    key_slice = int(np.clip(np.round(center_k), 0, volume.size_ijk[2] - 1))
    box_ij = (float(ijk[:, 0].min()), float(ijk[:, 1].min()), float(ijk[:, 0].max()), float(ijk[:, 1].max()))
    return corners, key_slice, box_ij
