"""Finding DICOM files and reading their headers: a folder (walked recursively), a DICOMDIR, or a list of files.

Only headers are read here (``stop_before_pixels``), so a folder of several series costs one pass over the headers
before any pixel is decoded. Two real-world repairs happen at this edge so that nothing downstream has to know:

* anonymisers often blank SOP Class UID and SOP Instance UID in the dataset while the file meta information
  (Media Storage SOP Class / Instance UID) still carries them; the header then takes the file meta's values
  (:attr:`DicomHeader.uids_from_meta` records it) -- they are the UIDs a PACS indexes the file under;
* a DICOMDIR names its files by ISO 9660 paths relative to its own folder; they are resolved and read like any
  other file (the DICOMDIR itself is not an image).

Files that are not DICOM Part 10 files (no ``DICM`` prefix) are skipped in a folder and refused when named.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LesaNetError

# Media Storage Directory Storage: the SOP class of a DICOMDIR.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class DicomHeader:
    """One DICOM file's header (no pixel data), with UIDs repaired from the file meta where needed.

    Attributes:
        path: the file.
        dataset: the pydicom dataset read with ``stop_before_pixels``; SOPClassUID / SOPInstanceUID hold the
            file meta's values where the dataset's were empty or missing.
        uids_from_meta: True when at least one of the two UIDs came from the file meta.
    """

    path: str
    dataset: Any
    uids_from_meta: bool = False

    @property
    def sop_class_uid(self) -> str | None:
        return _text(self.dataset.get("SOPClassUID")) or None

    @property
    def sop_instance_uid(self) -> str | None:
        return _text(self.dataset.get("SOPInstanceUID")) or None


def dicom_headers(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[DicomHeader], int]:
    """The DICOM headers of a folder, a DICOMDIR, one file or a list of files, and how many files were skipped.

    A folder holding a ``DICOMDIR`` is read through it; any other folder is walked recursively. Files named
    explicitly must be DICOM; files found in a folder that are not are counted as skipped.

    Raises:
        LesaNetError: a named file is missing or not a DICOM file, or a DICOMDIR cannot be read.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            dicomdir = path / "DICOMDIR"
            if dicomdir.is_file():
                return _read_named(_dicomdir_files(dicomdir)), 0
            return _read_found(sorted(p for p in path.rglob("*") if p.is_file()))
        files = [path]
    else:
        files = [Path(p) for p in source]
        if not files:
            raise LesaNetError("volume: a list of DICOM files must not be empty, but got []")
    for path in files:
        if not path.is_file():
            raise LesaNetError(f"{path}: must be an existing DICOM file, but got no such file")
    if len(files) == 1 and _is_dicomdir(files[0]):
        return _read_named(_dicomdir_files(files[0])), 0
    return _read_named(files), 0


def read_header(path: str | os.PathLike) -> DicomHeader | None:
    """The header of one file, or None when it is not a DICOM Part 10 file."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        return None
    except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise LesaNetError(f"{path}: must be a readable DICOM file, but reading it failed ({err})") from err
    return _repair_uids(str(path), ds)


def _read_named(files: Iterable[Path]) -> list[DicomHeader]:
    headers = []
    for path in files:
        header = read_header(path)
        if header is None:
            raise LesaNetError(f"{path}: must be a DICOM Part 10 file (128-byte preamble and 'DICM' prefix), "
                               "but it has no DICOM prefix")
        if header.sop_class_uid != DICOMDIR_SOP_CLASS:
            headers.append(header)
    return headers


def _read_found(files: Iterable[Path]) -> tuple[list[DicomHeader], int]:
    headers, skipped = [], 0
    for path in files:
        try:
            header = read_header(path)
        except LesaNetError:
            header = None  # an unreadable stray file in a folder is skipped like any non-DICOM file
        if header is None:
            skipped += 1
        elif header.sop_class_uid != DICOMDIR_SOP_CLASS:
            headers.append(header)
    return headers, skipped


def _repair_uids(path: str, ds: Any) -> DicomHeader:
    meta = getattr(ds, "file_meta", None)
    repaired = False
    for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                  ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        value = _text(ds.get(keyword))
        meta_value = _text(meta.get(meta_keyword)) if meta is not None else ""
        if not value and meta_value:
            setattr(ds, keyword, meta_value)
            repaired = True
    return DicomHeader(path, ds, repaired)


def _is_dicomdir(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    header = read_header(path)
    return header is not None and header.sop_class_uid == DICOMDIR_SOP_CLASS


def _dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR's records reference, resolved against the DICOMDIR's folder, in record order."""
    import pydicom

    try:
        records = pydicom.dcmread(str(path)).get("DirectoryRecordSequence")
    except (OSError, ValueError, KeyError, EOFError, pydicom.errors.InvalidDicomError) as err:
        raise LesaNetError(f"{path}: must be a readable DICOMDIR, but reading it failed ({err})") from err
    files = []
    for record in records or []:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        name = path.parent.joinpath(*[str(p).strip() for p in parts])
        if not name.is_file():
            raise LesaNetError(f"{path}: the DICOMDIR names {'/'.join(map(str, parts))!r}, but there is no file {name}")
        files.append(name)
    if not files:
        raise LesaNetError(f"{path}: a DICOMDIR must reference image files, but it references none")
    return files


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


__all__ = ["DICOMDIR_SOP_CLASS", "DicomHeader", "dicom_headers", "read_header"]
