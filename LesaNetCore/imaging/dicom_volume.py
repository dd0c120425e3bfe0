"""Reading a DICOM series as a :class:`DicomVolume`: HU voxels, LPS geometry and the source of every slice.

The steps, each in its own module: find the files and read their headers (:mod:`.dicom_files`), choose the
series (:mod:`.dicom_series`), list its frames (:mod:`.dicom_frames`), lay them on a grid (:mod:`.dicom_geometry`),
then decode only the frames the grid uses and build the voxels here. What the rules did is logged on the
``LesaNetCore.imaging.dicom`` logger (INFO: which series; WARNING: anything that changed the data) and kept in
:attr:`DicomSource.notes`, so the command line prints it and the Slicer module can show it.

The source of each K slice (:attr:`DicomSource.slices`) is what the SR export points at: the SOP Class and
Instance UIDs actually found (the file meta's where the dataset's were blank) and, for a multi-frame instance, the
frame number. A slice interpolated by the grid has no source image; the SR then places that box in 3D in the
series' frame of reference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LesaNetError
from .dicom_files import dicom_headers, read_header
from .dicom_frames import FrameRef, decode_frames, frames_of
from .dicom_geometry import StackGeometry, check_placement, stack_frames
from .dicom_series import choose_series, group_series, is_localizer
from .volume import Volume

_LOG = logging.getLogger("LesaNetCore.imaging.dicom")
# A CT series of reconstructed slices always holds air, lung or fat somewhere (below this HU); one whose values
# never go this low is another modality labelled CT, or a CT whose Rescale Intercept was lost.
_CT_MUST_GO_BELOW_HU = -200.0
# Patient, study and series attributes copied into the SR; type 2 ones are kept (empty) when absent.
_STUDY_KEYWORDS = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                   "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                   "ReferringPhysicianName", "StudyDescription", "SeriesInstanceUID", "SeriesNumber", "Modality",
                   "FrameOfReferenceUID", "Manufacturer", "InstitutionName")
_TYPE2_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                   "StudyID", "AccessionNumber", "ReferringPhysicianName")


@dataclass(frozen=True)
class DicomSource:
    """Where a volume's slices came from.

    Attributes:
        series_uid: the Series Instance UID read.
        header: pixel-free dataset with the patient, study and series attributes of the series (type 2
            attributes present, possibly empty), for the SR's patient and study modules.
        slices: per K slice its source frame, or None where the slice was interpolated.
        neighbours: per K slice, for an interpolated slice, the two frames it was interpolated from.
        notes: what the reader chose and changed, in order.
    """

    series_uid: str
    header: Any
    slices: tuple[FrameRef | None, ...]
    neighbours: tuple[tuple[FrameRef, FrameRef] | None, ...]
    notes: tuple[str, ...] = ()

    @property
    def frame_of_reference_uid(self) -> str | None:
        return str(self.header.get("FrameOfReferenceUID", "") or "").strip() or None

    @property
    def has_uids(self) -> bool:
        """True when every source frame has both SOP UIDs (the SR can point at them)."""
        refs = [r for r in self.slices if r is not None] + [r for pair in self.neighbours if pair for r in pair]
        return all(r.sop_class_uid and r.sop_instance_uid for r in refs)


@dataclass(frozen=True, eq=False)
class DicomVolume(Volume):
    """A :class:`Volume` read from DICOM, with the source of every slice (see :class:`DicomSource`)."""

    dicom: DicomSource | None = field(default=None)


def read_dicom(source: str | os.PathLike | Sequence[str | os.PathLike], series_uid: str | None = None,
               allow_non_ct: bool = False) -> DicomVolume:
    """Reads one DICOM series (folder, DICOMDIR, file or file list) as HU voxels with LPS geometry.

    Args:
        source: a folder (walked recursively, or through its DICOMDIR), a DICOMDIR, one file or a list of files.
        series_uid: the Series Instance UID to read; by default the series the rule of :mod:`.dicom_series`
            picks.
        allow_non_ct: read a series of another modality (MR, PET ...) too; its values are then not HU.

    Raises:
        LesaNetError: naming the file and the rule, for every input the rules refuse.
    """
    name = _describe(source)
    headers, skipped = dicom_headers(source)
    series = group_series(headers)
    chosen, notes = choose_series(series, name, series_uid, allow_non_ct)
    if skipped:
        notes.append(f"{skipped} file(s) in the folder are not DICOM and were ignored")
    warnings = []
    repaired = sum(h.uids_from_meta for h in chosen.headers)
    if repaired:
        warnings.append(f"{repaired} file(s) have an empty SOP Class / Instance UID in the dataset; the file meta's "
                        "UIDs are used")
    headers = [h for h in chosen.headers if not is_localizer(h.dataset)] or list(chosen.headers)
    if len(headers) < len(chosen.headers):
        warnings.append(f"{len(chosen.headers) - len(headers)} localizer image(s) inside the series were left out")
    frames = [frame for h in headers for frame in frames_of(h.path, h.dataset)]
    where = f"{name} (series {chosen.uid})"
    geometry = stack_frames(frames, where)
    warnings.extend(geometry.warnings)
    pixels = _decode_used(frames, geometry)
    _check_duplicates(frames, geometry, pixels)
    voxels = _voxels(geometry, pixels)
    modality = chosen.modality or "CT"
    if modality == "CT" and not allow_non_ct:
        _check_ct_values(voxels, where)
    elif modality != "CT":
        warnings.append(f"modality {modality}: the values are not HU, so LesaNet's labels are not meaningful")
    for note in notes:
        _LOG.info(note)
    for warning in warnings:
        _LOG.warning(warning)
    slices = tuple(None if s.frame is None else frames[s.frame] for s in geometry.slices)
    neighbours = tuple(None if s.frame is not None else (frames[s.lower], frames[s.upper])
                       for s in geometry.slices)
    dicom = DicomSource(chosen.uid, study_header(headers[0].dataset), slices, neighbours,
                        tuple(notes + warnings))
    files = None if any(s is None for s in slices) else tuple(s.path for s in slices)
    return DicomVolume(voxels, geometry.spacing, geometry.origin, geometry.direction, where, files, dicom=dicom)


def dicom_source(volume: Any) -> DicomSource | None:
    """The DICOM source of ``volume``'s slices: a DicomVolume's own, or one built from ``slice_files``.

    Volumes made elsewhere (the Slicer module's, from its DICOM database) name one single-frame file per K slice
    in ``slice_files``; their headers give the same :class:`DicomSource`. None when the volume has no DICOM files.

    Raises:
        LesaNetError: a slice file is not a readable DICOM image, or lacks what places it in 3D (position,
            orientation, pixel spacing), or the files differ in size, orientation or spacing.
    """
    own = getattr(volume, "dicom", None)
    if own is not None:
        return own
    files = getattr(volume, "slice_files", None)
    if not files:
        return None
    headers = {}
    for name in dict.fromkeys(str(f) for f in files):
        header = read_header(name)
        if header is None:
            raise LesaNetError(f"volume.slice_files: must be DICOM files, but {name!r} has no DICOM prefix")
        headers[name] = header
    frames = {name: frames_of(name, header.dataset) for name, header in headers.items()}
    several = next((name for name, found in frames.items() if len(found) != 1), None)
    if several is not None:
        raise LesaNetError(f"volume.slice_files: must be single-frame images, one per slice, but {several!r} has "
                           f"{len(frames[several])} frames (read multi-frame files with read_volume)")
    slices = tuple(frames[str(f)][0] for f in files)
    check_placement(slices)  # the SR places its regions through each file's position, orientation and spacing
    first = headers[str(files[0])].dataset
    return DicomSource(str(first.get("SeriesInstanceUID", "") or ""), study_header(first), slices,
                       (None,) * len(slices))


def _decode_used(frames: list[FrameRef], geometry: StackGeometry) -> dict[int, np.ndarray]:
    """HU of every frame the grid or the duplicate check uses, decoding each file once."""
    used = {n for s in geometry.slices for n in (s.frame, s.lower, s.upper) if n is not None}
    used.update(n for pair in geometry.duplicates for n in pair)
    by_file: dict[str, list[int]] = {}
    for n in sorted(used):
        by_file.setdefault(frames[n].path, []).append(n)
    pixels = {}
    for path, indices in by_file.items():
        for n, image in zip(indices, decode_frames(path, [frames[n] for n in indices]), strict=True):
            pixels[n] = image
    return pixels


def _check_duplicates(frames: list[FrameRef], geometry: StackGeometry, pixels: dict[int, np.ndarray]) -> None:
    for kept, dropped in geometry.duplicates:
        if not np.array_equal(pixels[kept], pixels[dropped]):
            raise LesaNetError(
                f"{frames[dropped].describe()}: two slices at one position must hold the same image to be a "
                f"duplicate, but it differs from {frames[kept].describe()} (two acquisitions in one series? "
                "read one of them by passing its files)")


def _voxels(geometry: StackGeometry, pixels: dict[int, np.ndarray]) -> np.ndarray:
    first = next(iter(pixels.values()))
    voxels = np.empty((len(geometry.slices), *first.shape), np.float32)
    for k, s in enumerate(geometry.slices):
        if s.frame is not None:
            voxels[k] = pixels[s.frame]
        else:  # linear along K in HU, as LesaNet's own neighbour-slice interpolation
            low, high = pixels[s.lower], pixels[s.upper]
            voxels[k] = low + (high - low) * np.float32(s.weight)
    return voxels


def _check_ct_values(voxels: np.ndarray, where: str) -> None:
    low, high = float(voxels.min()), float(voxels.max())
    if low > _CT_MUST_GO_BELOW_HU:
        raise LesaNetError(
            f"{where}: a CT series must hold air, lung or fat (values below {_CT_MUST_GO_BELOW_HU:g} HU) somewhere, "
            f"but its values are {low:g}..{high:g}: another modality labelled CT, or a lost Rescale Intercept "
            "(pass --allow-non-ct to read it anyway)")


def study_header(ds: Any) -> Any:
    """The patient, study and series attributes of ``ds`` (type 2 ones present, possibly empty), pixel-free."""
    from pydicom.dataset import Dataset

    header = Dataset()
    for keyword in _STUDY_KEYWORDS:
        if keyword in ds and ds[keyword].value not in (None, ""):
            setattr(header, keyword, ds[keyword].value)
    for keyword in _TYPE2_KEYWORDS:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    files = [str(p) for p in source]
    return files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1} more file(s)"


__all__ = ["DicomSource", "DicomVolume", "dicom_source", "read_dicom", "study_header"]
