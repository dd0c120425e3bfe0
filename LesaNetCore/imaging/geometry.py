"""A volume's geometry without its voxels: the grid size and the IJK <-> LPS mapping.

Whoever draws the box does not need the voxels to turn it into indices: the Slicer module maps an ROI or a
RECIST line onto the CT's grid in Slicer's process while the voxels travel, once per volume, to the inference
process. ``VolumeGeometry`` follows :class:`~LesaNetCore.imaging.Volume`'s conventions (ITK's: spacing,
origin and direction in LPS; index order i, j, k) and maps points exactly as a Volume with the same geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import invalid

_RAS_FLIP = np.diag([-1.0, -1.0, 1.0])


def lps_geometry_of(matrix) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray]:
    """(spacing, LPS origin, LPS direction) of a 4x4 IJK-to-RAS matrix: column norms, flipped offset and columns.

    Raises:
        LesaNetError: a matrix that is not finite 4x4 or has a zero column.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise invalid("matrix", "must be a finite 4x4 IJK-to-RAS matrix", np.asarray(matrix).tolist())
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    if not (spacing > 0).all():
        raise invalid("matrix", "must have non-zero columns (the voxel spacing)", spacing.tolist())
    direction = _RAS_FLIP @ (matrix[:3, :3] / spacing)
    return tuple(float(v) for v in spacing), tuple(float(v) for v in _RAS_FLIP @ matrix[:3, 3]), direction


@dataclass(frozen=True, eq=False)
class VolumeGeometry:
    """The grid of a volume.

    Attributes:
        size_ijk: number of voxels along I, J, K.
        spacing: millimetres between voxel centres along I, J, K.
        origin: LPS millimetres of the centre of voxel (0, 0, 0).
        direction: 3x3; column c is the LPS unit direction of index axis c.
        source: what the volume is (a path, a node name), for messages.

    Example:
        >>> g = VolumeGeometry.from_ijk_to_ras((4, 3, 2), np.diag([-0.5, -0.5, 2.0, 1.0]))
        >>> g.ijk_to_lps([2, 2, 1]).tolist(), g.spacing, g.is_axial
        ([1.0, 1.0, 2.0], (0.5, 0.5, 2.0), True)
    """

    size_ijk: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size_ijk)
        if len(size) != 3 or min(size) < 1:
            raise invalid("size_ijk", "must be three positive voxel counts", self.size_ijk)
        direction = np.array(self.direction, dtype=np.float64)
        if direction.shape != (3, 3) or abs(np.linalg.det(direction)) < 1e-3:
            raise invalid("direction", "must be an invertible 3x3 matrix", np.asarray(self.direction).tolist())
        direction.setflags(write=False)
        object.__setattr__(self, "size_ijk", size)
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", direction)

    @classmethod
    def from_ijk_to_ras(cls, size_ijk, matrix, source: str = "") -> VolumeGeometry:
        """From a 4x4 IJK-to-RAS matrix (Slicer's ``GetIJKToRASMatrix``, a NIfTI affine)."""
        spacing, origin, direction = lps_geometry_of(matrix)
        return cls(tuple(size_ijk), spacing, origin, direction, source)

    @property
    def _index_to_lps(self) -> np.ndarray:
        return self.direction * np.asarray(self.spacing)

    @property
    def is_axial(self) -> bool:
        """True when the K axis is the index axis closest to the patient's z (a stack of axial slices)."""
        return int(np.argmax(np.abs(self.direction[2, :]))) == 2

    def ijk_to_lps(self, ijk) -> np.ndarray:
        """Continuous indices (..., 3) ordered (i, j, k) -> LPS millimetres (..., 3)."""
        return np.asarray(ijk, dtype=np.float64) @ self._index_to_lps.T + np.asarray(self.origin)

    def lps_to_ijk(self, lps) -> np.ndarray:
        """LPS millimetres (..., 3) -> continuous indices (i, j, k)."""
        return (np.asarray(lps, dtype=np.float64) - np.asarray(self.origin)) @ np.linalg.inv(self._index_to_lps).T
