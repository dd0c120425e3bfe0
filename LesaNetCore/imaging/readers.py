"""Reading CT volumes from files: NIfTI, NRRD, MetaImage and DICOM series folders, all through SimpleITK.

SimpleITK (GDCM underneath) applies DICOM rescale slope/intercept and decodes compressed transfer syntaxes such
as JPEG 2000, so the result is HU whatever the encoding. Each failure names the file and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import LesaNetError
from .volume import Volume, require_3d

# A CT in HU always has tissue above this (soft tissue is about 0-100 HU, air -1000); a volume whose maximum
# stays below it is empty air or not in HU.
_MIN_MAX_HU = -500.0
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
# Relative tolerance on the gap between DICOM slices before a series counts as unevenly spaced.
_GAP_TOLERANCE = 0.05


def read_volume(path: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Reads a CT volume in HU from an image file or a DICOM series folder.

    Args:
        path: a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, or a folder of
            DICOM files.
        series_uid: for a folder holding several series, the SeriesInstanceUID to read; by default the series
            with the most files is read.

    Raises:
        LesaNetError: the path is missing or unreadable, the image is 2D or multi-component, its spacing is zero,
            a voxel is not finite, or the values do not look like CT HU (see :func:`check_ct_like`).
    """
    path = Path(path)
    if not path.exists():
        raise LesaNetError(f"volume: must be an existing image file or DICOM folder, but got {str(path)!r}")
    if path.is_dir():
        volume, pixel_type = _read_dicom_folder(path, series_uid)
    else:
        if series_uid is not None:
            raise LesaNetError(
                f"series_uid: applies only to a DICOM folder, but got {series_uid!r} for file {str(path)!r}"
            )
        volume, pixel_type = _read_file(path)
    require_3d(volume)
    check_ct_like(volume.voxels, volume.source, pixel_type)
    return volume


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
            f"{path}: cannot be read as an image (supported: {', '.join(_IMAGE_SUFFIXES)} or a DICOM folder): "
            f"{_first_line(err)}"
        ) from err
    if dimension != 3 or (dimension == 3 and 1 in size):
        hint = " (for DICOM, pass the folder of the series)" if path.suffix.lower() == ".dcm" else ""
        raise LesaNetError(
            f"{path}: must be a 3D volume{hint}, but got a {dimension}D image of size {tuple(size)}"
        )
    if components != 1:
        raise LesaNetError(f"{path}: must hold one value per voxel (greyscale CT), but got {components} components")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise LesaNetError(f"{path}: voxel spacing must be positive and finite, but got {tuple(spacing)}")
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise LesaNetError(f"{path}: cannot be read as an image: {_first_line(err)}") from err
    return Volume.from_sitk(image, str(path)), pixel_type


def _read_dicom_folder(folder: Path, series_uid: str | None) -> tuple[Volume, str]:
    import SimpleITK as sitk

    uids = sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise LesaNetError(f"{folder}: a folder must hold a DICOM image series, but got none")
    files_by_uid = {uid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) for uid in uids}
    if series_uid is None:
        # Largest series first; ties by UID so the choice is reproducible.
        uid = max(uids, key=lambda u: (len(files_by_uid[u]), u))
    elif series_uid in files_by_uid:
        uid = series_uid
    else:
        available = ", ".join(f"{u} ({len(files_by_uid[u])} files)" for u in uids)
        raise LesaNetError(
            f"series_uid: must be one of the series in {str(folder)!r}: {available}, but got {series_uid!r}"
        )
    files = tuple(files_by_uid[uid])
    if len(files) < 2:
        raise LesaNetError(
            f"{folder}: series {uid} must have at least 2 slices to form a 3D volume, but got {len(files)} file"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise LesaNetError(f"{folder}: series {uid} cannot be read: {_first_line(err)}") from err
    _check_slice_positions(reader, image, folder, uid, len(files))
    volume = Volume.from_sitk(image, f"{folder} (series {uid})", files)
    return volume, sitk.GetPixelIDValueAsString(image.GetPixelID())


def _check_slice_positions(reader, image, folder: Path, uid: str, count: int) -> None:
    """Rejects series without positions, with duplicate positions or with missing slices (uneven gaps)."""
    positions = []
    for index in range(count):
        if not reader.HasMetaDataKey(index, "0020|0032"):
            raise LesaNetError(
                f"{reader.GetFileNames()[index]}: must have ImagePositionPatient (0020,0032) to place the slice "
                "in 3D (missing spacing), but got none"
            )
        text = reader.GetMetaData(index, "0020|0032")
        try:
            positions.append([float(v) for v in text.replace(",", "\\").split("\\") if v.strip()])
        except ValueError as err:
            raise LesaNetError(
                f"{reader.GetFileNames()[index]}: ImagePositionPatient must be three numbers, but got {text!r}"
            ) from err
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    heights = np.asarray(positions, dtype=float) @ normal
    gaps = np.diff(heights)
    if np.any(np.abs(gaps) < 1e-4):
        raise LesaNetError(
            f"{folder}: series {uid} slices must have distinct positions (zero slice spacing), but got "
            f"duplicate positions at heights {heights.round(3).tolist()}"
        )
    mean_gap = float(np.mean(np.abs(gaps)))
    if np.max(np.abs(np.abs(gaps) - mean_gap)) > _GAP_TOLERANCE * mean_gap + 1e-3:
        raise LesaNetError(
            f"{folder}: series {uid} slices must be evenly spaced (a gap means missing slices), but got gaps "
            f"{sorted(set(np.abs(gaps).round(3).tolist()))} mm"
        )


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    # SimpleITK puts the useful sentence after a line of source location; keep the last informative one.
    return lines[-1] if lines else type(err).__name__
