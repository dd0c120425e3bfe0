"""Reading CT volumes: NIfTI, NRRD and MetaImage files through SimpleITK; DICOM through :mod:`.dicom_volume`.

DICOM goes through pydicom with LesaNetCore's own rules (series choice, slice order, spacing, tilt, multi-frame,
rescale, padding; see :mod:`.dicom_volume`), because SimpleITK's series reader decides those silently. Each
failure names the file and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import LesaNetError
from .volume import Volume, require_3d

# A CT in HU always has tissue above this (soft tissue is about 0-100 HU, air -1000); a volume whose maximum
# stays below it is empty air or not in HU.
_MIN_MAX_HU = -500.0
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

VolumeSource = str | os.PathLike | Sequence[str | os.PathLike]


def read_volume(path: VolumeSource, series_uid: str | None = None, allow_non_ct: bool = False) -> Volume:
    """Reads a CT volume in HU from an image file, a DICOM folder, a DICOMDIR, or DICOM files.

    Args:
        path: a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file; a folder of DICOM
            files (walked recursively, or read through its DICOMDIR); a DICOMDIR; one DICOM file (a single slice or
            a multi-frame image); or a list of DICOM files.
        series_uid: for DICOM holding several series, the SeriesInstanceUID to read; by default the series chosen
            by the rule of :mod:`.dicom_series` (axial CT, ORIGINAL, most images, not a localizer).
        allow_non_ct: read a DICOM series of another modality (MR, PET ...) too.

    Returns:
        A :class:`Volume`; for DICOM a :class:`~.dicom_volume.DicomVolume` that also knows each slice's source.
        A single DICOM slice gives a one-slice volume (LesaNet repeats it for its missing neighbours).

    Raises:
        LesaNetError: the path is missing or unreadable, the image is 2D (other than one DICOM slice) or
            multi-component, its spacing is zero, a voxel is not finite, or the values do not look like CT HU (see
            :func:`check_ct_like`), or a DICOM rule refuses the series.
    """
    if not isinstance(path, str | os.PathLike):
        return _read_dicom(list(path), series_uid, allow_non_ct)
    path = Path(path)
    if not path.exists():
        raise LesaNetError(f"volume: must be an existing image file, DICOM folder or DICOM file, but got "
                           f"{str(path)!r}")
    if path.is_dir() or not path.name.lower().endswith(_IMAGE_SUFFIXES) and _is_dicom(path):
        return _read_dicom(path, series_uid, allow_non_ct)
    if series_uid is not None:
        raise LesaNetError(f"series_uid: applies only to DICOM input, but got {series_uid!r} for file {str(path)!r}")
    volume, pixel_type = _read_file(path)
    require_3d(volume)
    check_ct_like(volume.voxels, volume.source, pixel_type)
    return volume


def _read_dicom(source, series_uid: str | None, allow_non_ct: bool) -> Volume:
    from .dicom_volume import read_dicom

    volume = read_dicom(source, series_uid=series_uid, allow_non_ct=allow_non_ct)
    if volume.dicom is None or not allow_non_ct or volume.dicom.header.get("Modality", "CT") == "CT":
        check_ct_like(volume.voxels, volume.source)
    return volume


def _is_dicom(path: Path) -> bool:
    from .dicom_files import read_header

    try:
        return path.name.upper() == "DICOMDIR" or read_header(path) is not None
    except LesaNetError:
        return False


def check_ct_like(voxels: np.ndarray, source: str = "volume", pixel_type: str = "") -> None:
    """Rejects arrays that are not CT in Hounsfield units.

    The rule: the stored pixel type must not be 8-bit (8-bit files are windowed screenshots); the maximum must
    reach -500 HU (some tissue, not only air); and the values must not all be integers in 0..255 (a windowed
    8-bit export stored in a wider type). A cropped CT of soft tissue only passes; a raw CT whose rescale
    intercept was lost (air at 0) cannot be told from HU by its values and is not detected.

    Raises:
        LesaNetError: naming the source and which part of the rule failed.
    """
    if pixel_type in ("8-bit unsigned integer", "8-bit signed integer"):
        raise LesaNetError(f"{source}: must be CT in HU, not an 8-bit image, but got pixel type {pixel_type!r}")
    low, high = float(voxels.min()), float(voxels.max())
    if high < _MIN_MAX_HU:
        raise LesaNetError(
            f"{source}: must be CT in HU with some voxel above {_MIN_MAX_HU:g} HU (tissue, not only air), "
            f"but got values {low:g}..{high:g}"
        )
    if low >= 0 and high <= 255 and np.array_equal(voxels, np.round(voxels)):
        raise LesaNetError(
            f"{source}: must be CT in HU, not a windowed 0..255 grey-level image, but got integer values "
            f"{low:g}..{high:g}"
        )


def _read_file(path: Path) -> tuple[Volume, str]:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
        dimension = reader.GetDimension()
        size = reader.GetSize()
        spacing = reader.GetSpacing()
        components = reader.GetNumberOfComponents()
    except RuntimeError as err:
        raise LesaNetError(
            f"{path}: cannot be read as an image (supported: {', '.join(_IMAGE_SUFFIXES)}, DICOM files or a DICOM folder): "
            f"{_first_line(err)}"
        ) from err
    if dimension != 3 or (dimension == 3 and 1 in size):
        raise LesaNetError(f"{path}: must be a 3D volume, but got a {dimension}D image of size {tuple(size)}")
    if components != 1:
        raise LesaNetError(f"{path}: must hold one value per voxel (greyscale CT), but got {components} components")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise LesaNetError(f"{path}: voxel spacing must be positive and finite, but got {tuple(spacing)}")
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise LesaNetError(f"{path}: cannot be read as an image: {_first_line(err)}") from err
    return Volume.from_sitk(image, str(path)), pixel_type


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    # SimpleITK puts the useful sentence after a line of source location; keep the last informative one.
    return lines[-1] if lines else type(err).__name__
