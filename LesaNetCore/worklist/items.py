"""Worklists: the lesions to annotate or review, one per row, as CSV, JSON lines or DeepLesion's DL_info.csv.

A reading list (a study's measured lesions, a trial's target lesions, a data set to label) names for each lesion
its CT and where the lesion is on it. Columns (CSV header) or keys (JSON lines); only ``volume`` and one lesion
input are required:

==============  ======================================================================================
``volume``      the CT: an image file (NIfTI, NRRD, MHA), a DICOM folder or DICOMDIR, or a DICOM file;
                relative paths are relative to the worklist's folder
``series_uid``  the SeriesInstanceUID to read from a folder holding several series (optional)
``box_ijk``     ``i1,j1,i2,j2,k``: voxel indices as stored, corners inclusive, on slice k
``box_lps``     ``x1,y1,x2,y2,z``: LPS millimetres on the axial plane at height z
``recist_ijk``  ``i1,j1,i2,j2[,i3,j3,i4,j4],k``: RECIST long (and short) axis end points on slice k
``recist_lps``  ``x1,y1,x2,y2[,x3,y3,x4,y4],z``: the same in LPS millimetres
``lesion_id``   a name for the lesion, unique in the list (default: the row number, ``row-N``)
``patient_id``  the patient (its lesions are excluded from its own similar-lesion search)
``study``       groups lesions into one SR (default: the volume)
``sentence``    the report sentence about the lesion (shown beside the lesion in the Slicer review)
==============  ======================================================================================

In JSON lines the boxes may also be lists of numbers. A CSV cell holding a list is quoted (``"10,12,40,48,7"``).
DeepLesion's ``DL_info.csv`` (recognised by its header) is a worklist too: each row's lesion is read from the
16-bit PNGs of ``Images_png/`` next to it (the key slice and its neighbours, stacked so that the key slice is
the stack's slice ``deeplesion_reach``), with its ``Bounding_boxes`` as the box, its patient and the row index as
the lesion id.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import LesaNetError, invalid

INPUT_FIELDS = ("box_ijk", "box_lps", "recist_ijk", "recist_lps")
FIELDS = ("volume", "series_uid", *INPUT_FIELDS, "lesion_id", "patient_id", "study", "sentence")
_COUNTS = {"box_ijk": (5,), "box_lps": (5,), "recist_ijk": (5, 9), "recist_lps": (5, 9)}
DL_INFO_HEADER = ("File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index")


@dataclass(frozen=True)
class WorklistItem:
    """One lesion of a worklist.

    Attributes:
        lesion_id: unique within the list.
        volume: path of the CT (absolute), or for a DeepLesion row the DeepLesion folder.
        input_kind: one of ``INPUT_FIELDS``.
        values: the numbers of that input.
        series_uid: the series to read from a multi-series folder, or "".
        patient_id, study, sentence: see the module docstring.
        row: the 1-based data row in the file (for messages).
        deeplesion_row: for a DL_info.csv worklist, the row index (DeepLesion's lesion index), else None.
    """

    lesion_id: str
    volume: str
    input_kind: str
    values: tuple[float, ...]
    series_uid: str = ""
    patient_id: str = ""
    study: str = ""
    sentence: str = ""
    row: int = 0
    deeplesion_row: int | None = None

    @property
    def volume_key(self) -> tuple[str, str]:
        """Lesions with the same key share one loaded volume."""
        if self.deeplesion_row is not None:
            return (self.volume, f"deeplesion:{self.deeplesion_row}")
        return (self.volume, self.series_uid)

    @property
    def study_key(self) -> str:
        return self.study or (f"{self.volume}#{self.series_uid}" if self.series_uid else self.volume)


def read_worklist(path: str | os.PathLike) -> list[WorklistItem]:
    """The lesions of a worklist file (CSV, JSON lines, or DeepLesion's DL_info.csv).

    Raises:
        LesaNetError: an unreadable file, a row without a volume or with no or several lesion inputs, a wrong
            count of numbers, a missing volume file, or a lesion id used twice, naming the file, row and value.
    """
    path = Path(path)
    if not path.is_file():
        raise invalid("worklist", "must be an existing CSV or JSON-lines file", str(path))
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = list(_json_rows(path))
    else:
        rows = list(_csv_rows(path))
    if rows and set(DL_INFO_HEADER) <= set(rows[0][1]):
        items = _deeplesion_items(path, rows)
    else:
        items = [_item(path, number, row) for number, row in rows]
    if not items:
        raise invalid(f"worklist {str(path)!r}", "must hold at least one lesion", "no rows")
    seen: dict[str, int] = {}
    for item in items:
        if item.lesion_id in seen:
            raise invalid(f"worklist {str(path)!r} row {item.row}: lesion_id",
                          f"must be unique (row {seen[item.lesion_id]} has it too)", item.lesion_id)
        seen[item.lesion_id] = item.row
    return items


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=1):
                yield number, {str(k).strip(): (v if v is not None else "") for k, v in row.items() if k}
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise invalid("worklist", f"must be a readable CSV file ({err})", str(path)) from err


def _json_rows(path: Path) -> Iterator[tuple[int, dict]]:
    from ..fileio import read_json_lines

    def parse(value):
        if not isinstance(value, dict):
            raise ValueError("each line must be a JSON object")
        return value

    yield from read_json_lines(path, parse, "a JSON object per lesion")


def _numbers(where: str, field: str, value) -> tuple[float, ...]:
    if isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError) as err:
        raise invalid(f"{where}: {field}", "must be comma-separated numbers", value) from err
    if len(numbers) not in _COUNTS[field] or not all(math.isfinite(v) for v in numbers):
        counts = " or ".join(str(c) for c in _COUNTS[field])
        raise invalid(f"{where}: {field}", f"must be {counts} finite numbers", value)
    return numbers


def _item(path: Path, number: int, row: dict) -> WorklistItem:
    where = f"worklist {str(path)!r} row {number}"
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise invalid(f"{where}", f"must only have the columns {list(FIELDS)}", unknown)
    volume = str(row.get("volume") or "").strip()
    if not volume:
        raise invalid(f"{where}: volume", "must name the CT (a file or DICOM folder)", volume)
    volume_path = Path(volume) if Path(volume).is_absolute() else path.parent / volume
    if not volume_path.exists():
        raise invalid(f"{where}: volume", "must exist (relative paths are relative to the worklist)",
                      str(volume_path))
    given = [f for f in INPUT_FIELDS if str(row.get(f) or "").strip() not in ("", "[]")]
    if len(given) != 1:
        raise invalid(f"{where}", f"must give exactly one of {list(INPUT_FIELDS)}", given or "none")
    kind = given[0]
    return WorklistItem(
        lesion_id=str(row.get("lesion_id") or "").strip() or f"row-{number}",
        volume=str(volume_path.resolve()),
        input_kind=kind,
        values=_numbers(where, kind, row[kind]),
        series_uid=str(row.get("series_uid") or "").strip(),
        patient_id=str(row.get("patient_id") or "").strip(),
        study=str(row.get("study") or "").strip(),
        sentence=str(row.get("sentence") or "").strip(),
        row=number,
    )


def _deeplesion_items(path: Path, rows: list[tuple[int, dict]]) -> list[WorklistItem]:
    from ..imaging.deeplesion import read_dl_info
    from .run import deeplesion_reach

    root = path.parent
    if not (root / "Images_png").is_dir():
        raise invalid(f"worklist {str(path)!r}", "is DeepLesion's DL_info.csv and needs the Images_png folder "
                      "beside it", str(root / "Images_png"))
    records = read_dl_info(path)
    sentences = _deeplesion_sentences(root)
    items = []
    for record in records:
        x1, y1, x2, y2 = record.bbox
        items.append(WorklistItem(
            lesion_id=str(record.lesion_idx), volume=str(root.resolve()), input_kind="box_ijk",
            values=(x1, y1, x2, y2, float(deeplesion_reach(record))), patient_id=str(record.patient_index),
            study=f"{record.patient_index:06d}_{record.study_index:02d}", sentence=sentences.get(record.lesion_idx, ""),
            row=record.lesion_idx + 1, deeplesion_row=record.lesion_idx))
    return items


def _deeplesion_sentences(root: Path) -> dict[int, str]:
    """Report sentences of a phantom or user data set (``sentences.jsonl``: ``{"id", "text"}``), when present."""
    path = root / "sentences.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                value = json.loads(line)
                out[int(value["id"])] = str(value.get("text", ""))
            except (ValueError, KeyError, TypeError) as err:
                raise LesaNetError(f"{path}: each line must be {{\"id\": row, \"text\": ...}} ({err})") from err
    return out
