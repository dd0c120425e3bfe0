"""The DeepLesion dataset layout: ``DL_info.csv`` and ``Images_png/<patient>_<study>_<series>/<NNN>.png``.

``DL_info.csv`` has one row per lesion (18 columns). Its pixel coordinates are 1-based (the reference code
subtracts 1); :class:`LesionRecord` holds them 0-based. The PNGs are 16-bit and store HU + 32768; a slice file is
named by its 3-digit slice index, and the dataset keeps only some slices around each key slice.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import LesaNetError, invalid
from .patch import CHANNEL_OFFSETS_MM, Patch, patch_from_slices

COLUMNS = (
    "File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index", "Measurement_coordinates",
    "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location", "Coarse_lesion_type",
    "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender",
    "Patient_age", "Train_Val_Test",
)
PNG_OFFSET = 32768
COARSE_TYPES = {
    1: "bone", 2: "abdomen", 3: "mediastinum", 4: "liver", 5: "lung", 6: "kidney", 7: "soft tissue", 8: "pelvis",
}


@dataclass(frozen=True)
class LesionRecord:
    """One row of DL_info.csv with typed values; pixel coordinates 0-based.

    Attributes:
        lesion_idx: 0-based row index in DL_info.csv (the lesion index the label files use).
        file_name: ``<patient>_<study>_<series>_<slice>.png`` of the key slice.
        patient_index, study_index, series_id: identify the CT series.
        key_slice_index: slice number of the key slice (its PNG is ``<key_slice_index:03d>.png``).
        measurement_coordinates: RECIST long axis (x1, y1, x2, y2) then short axis (x3, y3, x4, y4), 0-based.
        bbox: (x1, y1, x2, y2) lesion box on the key slice, 0-based pixel coordinates.
        lesion_diameters_pixel: long and short diameters in pixels.
        normalized_lesion_location: (x, y, z) of the lesion relative to the body, 0..1.
        coarse_lesion_type: 1..8 (see ``COARSE_TYPES``), -1 for the unlabelled test lesions.
        possibly_noisy: the annotation may be wrong.
        slice_range: (first, last) slice numbers kept in the dataset for this lesion.
        spacing: (x, y) millimetres per pixel and the slice interval in millimetres.
        image_size: (width, height) in pixels.
        dicom_windows: (low, high) HU window of the original DICOM.
        patient_gender: "M", "F" or "" when unknown.
        patient_age: years, or None when unknown.
        train_val_test: 1 train, 2 validation, 3 test.
    """

    lesion_idx: int
    file_name: str
    patient_index: int
    study_index: int
    series_id: int
    key_slice_index: int
    measurement_coordinates: tuple[float, ...]
    bbox: tuple[float, float, float, float]
    lesion_diameters_pixel: tuple[float, float]
    normalized_lesion_location: tuple[float, float, float]
    coarse_lesion_type: int
    possibly_noisy: bool
    slice_range: tuple[int, int]
    spacing: tuple[float, float, float]
    image_size: tuple[int, int]
    dicom_windows: tuple[float, float]
    patient_gender: str
    patient_age: int | None
    train_val_test: int

    @property
    def series_folder(self) -> str:
        """The Images_png sub-folder of this lesion's series: ``<pid:06d>_<study:02d>_<series:02d>``."""
        return f"{self.patient_index:06d}_{self.study_index:02d}_{self.series_id:02d}"

    @property
    def slice_interval(self) -> float:
        """Millimetres between consecutive slices (the third Spacing_mm_px_ value)."""
        return self.spacing[2]


def read_dl_info(path: str | os.PathLike) -> list[LesionRecord]:
    """Reads DL_info.csv into records, one per row, in file order (``lesion_idx`` = row index).

    Raises:
        LesaNetError: a column is missing, or a cell does not parse (naming the row, column and value).
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise LesaNetError(f"{path}: cannot be read as DL_info.csv ({err.strerror}), but got {str(path)!r}") from err
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LesaNetError(f"{path}: must have the 18 DL_info.csv columns, but got {missing} missing")
        return [_record(path, index, row) for index, row in enumerate(reader)]


def write_dl_info(path: str | os.PathLike, records: list[LesionRecord], overwrite: bool = False) -> Path:
    """Writes records as DL_info.csv (1-based pixel coordinates, as DeepLesion ships it), atomically."""
    from ..fileio import atomic_path

    with atomic_path(path, "DL_info.csv", overwrite) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for r in records:
            writer.writerow([
                r.file_name, r.patient_index, r.study_index, r.series_id, r.key_slice_index,
                _join(v + 1 for v in r.measurement_coordinates), _join(v + 1 for v in r.bbox),
                _join(r.lesion_diameters_pixel), _join(r.normalized_lesion_location), r.coarse_lesion_type,
                int(r.possibly_noisy), _join(r.slice_range), _join(r.spacing), _join(r.image_size),
                _join(r.dicom_windows), r.patient_gender, "" if r.patient_age is None else r.patient_age,
                r.train_val_test,
            ])
    return Path(path)


def slice_path(root: str | os.PathLike, record: LesionRecord, slice_index: int) -> Path:
    """``<root>/Images_png/<series_folder>/<slice_index:03d>.png``."""
    return Path(root) / "Images_png" / record.series_folder / f"{int(slice_index):03d}.png"


def hu_to_png16(hu: np.ndarray) -> np.ndarray:
    """HU -> DeepLesion's 16-bit PNG values (HU + 32768, rounded, clipped to uint16)."""
    return np.clip(np.round(np.asarray(hu, dtype=np.float64) + PNG_OFFSET), 0, 65535).astype(np.uint16)


def read_png_slice(root: str | os.PathLike, record: LesionRecord, slice_index: int) -> np.ndarray:
    """One slice of the lesion's series in HU (float32, rows x columns).

    Raises:
        LesaNetError: the PNG is missing, unreadable or not a 16-bit greyscale image.
    """
    from PIL import Image

    path = slice_path(root, record, slice_index)
    if not path.is_file():
        raise LesaNetError(f"{path}: the DeepLesion slice must exist, but got no such file")
    try:
        with Image.open(path) as image:
            pixels = np.array(image)
    except (OSError, SyntaxError) as err:
        raise LesaNetError(f"{path}: cannot be read as a PNG: {err}") from err
    if pixels.ndim != 2 or pixels.dtype not in (np.uint16, np.int32):
        raise LesaNetError(
            f"{path}: must be a 16-bit greyscale PNG storing HU + {PNG_OFFSET}, but got an array of "
            f"{pixels.dtype} with shape {pixels.shape}"
        )
    return (pixels.astype(np.float32) - np.float32(PNG_OFFSET)).astype(np.float32)


def load_lesion_patch(root: str | os.PathLike, record: LesionRecord) -> Patch:
    """The lesion's LesaNet patch from the DeepLesion PNGs, through :func:`patch_from_slices`.

    Reads the key slice and enough neighbours to interpolate at -2 and +2 mm. A neighbour the dataset does not
    ship is replaced by the nearest shipped slice towards the key slice, as the reference code does. The
    returned ``key_slice`` is the record's ``key_slice_index``; ``center_lps`` is in the stack's own frame
    (x = column * sx, y = row * sy, z = 0 at the key slice's position in the loaded stack).
    """
    interval = record.slice_interval
    reach = 0
    if math.isfinite(interval) and interval > 0:
        reach = math.ceil(max(abs(o) for o in CHANNEL_OFFSETS_MM) / interval - 1e-9)
    key = record.key_slice_index
    if not slice_path(root, record, key).is_file():
        raise LesaNetError(
            f"{slice_path(root, record, key)}: the key slice of lesion {record.lesion_idx} must exist, but got no "
            "such file"
        )
    cache: dict[int, np.ndarray] = {}
    stack = []
    for delta in range(-reach, reach + 1):
        index = _nearest_shipped(root, record, key, delta)
        if index not in cache:
            cache[index] = read_png_slice(root, record, index)
        stack.append(cache[index])
    shapes = {s.shape for s in stack}
    if len(shapes) != 1:
        raise LesaNetError(f"{record.series_folder}: slices must share one size, but got {sorted(shapes)}")
    patch = patch_from_slices(np.stack(stack), record.spacing[:2], interval, reach, record.bbox)
    return replace(patch, key_slice=key)


def _nearest_shipped(root, record: LesionRecord, key: int, delta: int) -> int:
    while delta != 0 and not slice_path(root, record, key + delta).is_file():
        delta -= int(np.sign(delta))
    return key + delta


def _join(values) -> str:
    return ", ".join(_format(v) for v in values)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if not value.is_integer() else str(int(value))
    return str(value)


def _record(path: Path, index: int, row: dict[str, str]) -> LesionRecord:
    def cell(column: str) -> str:
        return (row.get(column) or "").strip()

    def numbers(column: str, count: int, kind=float) -> tuple:
        text = cell(column)
        try:
            values = tuple(kind(float(v)) if kind is int else kind(v) for v in text.split(","))
        except ValueError as err:
            raise invalid(f"{path.name} row {index + 2} {column}", f"must be {count} numbers", text) from err
        if len(values) != count:
            raise invalid(f"{path.name} row {index + 2} {column}", f"must be {count} numbers", text)
        return values

    def integer(column: str) -> int:
        return numbers(column, 1, int)[0]

    age_text = cell("Patient_age")
    try:
        age = None if age_text in ("", "nan", "NaN") else int(float(age_text))
    except ValueError as err:
        raise invalid(f"{path.name} row {index + 2} Patient_age", "must be a number of years", age_text) from err
    return LesionRecord(
        lesion_idx=index,
        file_name=cell("File_name"),
        patient_index=integer("Patient_index"),
        study_index=integer("Study_index"),
        series_id=integer("Series_ID"),
        key_slice_index=integer("Key_slice_index"),
        measurement_coordinates=tuple(v - 1.0 for v in numbers("Measurement_coordinates", 8)),
        bbox=tuple(v - 1.0 for v in numbers("Bounding_boxes", 4)),
        lesion_diameters_pixel=numbers("Lesion_diameters_Pixel_", 2),
        normalized_lesion_location=numbers("Normalized_lesion_location", 3),
        coarse_lesion_type=integer("Coarse_lesion_type"),
        possibly_noisy=bool(integer("Possibly_noisy")),
        slice_range=numbers("Slice_range", 2, int),
        spacing=numbers("Spacing_mm_px_", 3),
        image_size=numbers("Image_size", 2, int),
        dicom_windows=numbers("DICOM_windows", 2),
        patient_gender="" if cell("Patient_gender").lower() == "nan" else cell("Patient_gender"),
        patient_age=age,
        train_val_test=integer("Train_Val_Test"),
    )
