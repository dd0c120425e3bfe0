"""A CT volume in one stated convention: voxels in HU, geometry in LPS millimetres.

Every reader and the Slicer adapter convert to this at the edge, so the patch code never guesses an
orientation. The array axes follow ``sitk.GetArrayFromImage``: ``voxels[k, j, i]`` with I the column, J the row
and K the slice index; spacing, origin and direction follow ITK, whose world frame is LPS (x to the patient's
left, y posterior, z superior). RAS (Slicer, NIfTI affines) differs from LPS by flipping the signs of x and y.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import LesaNetError, invalid

_RAS_FLIP = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar image with its LPS geometry.

    Attributes:
        voxels: float32 HU, shape (K, J, I) = (slices, rows, columns), as ``sitk.GetArrayFromImage`` returns.
        spacing: millimetres between voxel centres along I, J, K.
        origin: LPS millimetres of the centre of voxel (0, 0, 0).
        direction: 3x3; column c is the LPS unit direction of index axis c (ITK convention).
        source: where the volume came from (path or description), used in error messages.
        slice_files: the DICOM file of each K slice, in K order, when read from a DICOM series.

    Example:
        >>> v = Volume(np.zeros((2, 3, 4), np.float32), (0.5, 0.5, 2.0), (10.0, 20.0, 30.0), np.eye(3))
        >>> v.ijk_to_lps([1, 2, 1]).tolist()
        [10.5, 21.0, 32.0]
        >>> v.lps_to_ijk([10.5, 21.0, 32.0]).tolist()
        [1.0, 2.0, 1.0]
    """

    voxels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    source: str = ""
    slice_files: tuple[str, ...] | None = None
    _index_to_lps: np.ndarray = field(init=False, repr=False)
    _lps_to_index: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = f" ({self.source})" if self.source else ""
        voxels = np.asarray(self.voxels)
        if voxels.ndim != 3:
            raise invalid(f"voxels{where}", "must be a 3D array (slices, rows, columns)", voxels.shape)
        if voxels.size == 0:
            raise invalid(f"voxels{where}", "must not be empty", voxels.shape)
        if not np.issubdtype(voxels.dtype, np.number) or np.iscomplexobj(voxels):
            raise invalid(f"voxels{where}", "must hold real numbers", str(voxels.dtype))
        voxels = np.ascontiguousarray(voxels, dtype=np.float32)
        if not np.isfinite(voxels).all():
            bad = int(np.size(voxels) - np.count_nonzero(np.isfinite(voxels)))
            raise invalid(f"voxels{where}", "must all be finite (no NaN or infinity)", f"{bad} non-finite voxels")
        spacing = tuple(float(s) for s in np.asarray(self.spacing, dtype=float).ravel())
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise invalid(f"spacing{where}", "must be three positive finite millimetre values", self.spacing)
        origin = tuple(float(s) for s in np.asarray(self.origin, dtype=float).ravel())
        if len(origin) != 3 or not all(np.isfinite(s) for s in origin):
            raise invalid(f"origin{where}", "must be three finite millimetre values", self.origin)
        direction = np.array(self.direction, dtype=np.float64)
        if direction.shape != (3, 3) or not np.isfinite(direction).all():
            raise invalid(f"direction{where}", "must be a finite 3x3 matrix", np.asarray(self.direction).tolist())
        norms = np.linalg.norm(direction, axis=0)
        if not np.allclose(norms, 1.0, atol=1e-3) or abs(np.linalg.det(direction)) < 1e-3:
            raise invalid(f"direction{where}", "columns must be independent unit vectors", direction.tolist())
        direction.setflags(write=False)
        index_to_lps = direction * np.asarray(spacing)  # column c scaled by spacing c
        set_ = object.__setattr__
        set_(self, "voxels", voxels)
        set_(self, "spacing", spacing)
        set_(self, "origin", origin)
        set_(self, "direction", direction)
        set_(self, "_index_to_lps", index_to_lps)
        set_(self, "_lps_to_index", np.linalg.inv(index_to_lps))
        if self.slice_files is not None:
            files = tuple(str(f) for f in self.slice_files)
            if len(files) != voxels.shape[0]:
                raise invalid(f"slice_files{where}", f"must name one file per slice ({voxels.shape[0]})", len(files))
            set_(self, "slice_files", files)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(K, J, I) like ``voxels.shape``."""
        return tuple(self.voxels.shape)  # type: ignore[return-value]

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along I, J, K (ITK's ``GetSize`` order)."""
        k, j, i = self.voxels.shape
        return (i, j, k)

    def ijk_to_lps(self, ijk) -> np.ndarray:
        """Maps continuous indices (..., 3) ordered (i, j, k) to LPS millimetres (..., 3)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self._index_to_lps.T + np.asarray(self.origin)

    def lps_to_ijk(self, lps) -> np.ndarray:
        """Maps LPS millimetres (..., 3) to continuous indices (i, j, k); the exact inverse of ijk_to_lps."""
        lps = np.asarray(lps, dtype=np.float64)
        return (lps - np.asarray(self.origin)) @ self._lps_to_index.T

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """The 4x4 IJK-to-RAS matrix as Slicer's ``vtkMRMLScalarVolumeNode.GetIJKToRASMatrix`` holds it."""
        matrix = np.eye(4)
        matrix[:3, :3] = _RAS_FLIP @ self._index_to_lps
        matrix[:3, 3] = _RAS_FLIP @ np.asarray(self.origin)
        return matrix

    @classmethod
    def from_ras(
        cls,
        voxels: np.ndarray,
        spacing,
        origin_ras,
        direction_ras,
        source: str = "",
        slice_files: tuple[str, ...] | None = None,
    ) -> Volume:
        """Builds a Volume from RAS geometry (origin and direction columns in RAS) by flipping x and y."""
        origin = _RAS_FLIP @ np.asarray(origin_ras, dtype=np.float64)
        direction = _RAS_FLIP @ np.asarray(direction_ras, dtype=np.float64)
        return cls(voxels, tuple(spacing), tuple(origin), direction, source, slice_files)

    @classmethod
    def from_ijk_to_ras(cls, voxels: np.ndarray, matrix, source: str = "") -> Volume:
        """Builds a Volume from a (K, J, I) array and a 4x4 IJK-to-RAS matrix (Slicer's, or a NIfTI affine).

        The column norms of the matrix are the spacing; the normalised columns the direction.
        """
        from .geometry import lps_geometry_of

        spacing, origin, direction = lps_geometry_of(matrix)
        return cls(voxels, spacing, origin, direction, source)

    @classmethod
    def from_sitk(cls, image, source: str = "", slice_files: tuple[str, ...] | None = None) -> Volume:
        """Converts a 3D scalar SimpleITK image (any pixel type) to a float32 Volume."""
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise invalid(source or "image", "must be a 3D image", f"{image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise invalid(
                source or "image", "must hold one value per voxel", f"{image.GetNumberOfComponentsPerPixel()} components"
            )
        voxels = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
        return cls(voxels, image.GetSpacing(), image.GetOrigin(), direction, source, slice_files)

    def to_sitk(self):
        """The Volume as a float32 SimpleITK image with the same geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(self.voxels)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(float(v) for v in self.direction.ravel()))
        return image


def require_3d(volume: Volume) -> Volume:
    """Rejects a single-slice volume where a 3D neighbourhood is needed.

    Raises:
        LesaNetError: the volume has fewer than two slices along some axis.
    """
    if min(volume.voxels.shape) < 2:
        raise LesaNetError(
            f"{volume.source or 'volume'}: must be a 3D volume with at least 2 voxels along each axis, "
            f"but got size (I, J, K) = {volume.size_ijk}"
        )
    return volume
