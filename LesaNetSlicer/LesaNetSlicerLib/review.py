"""Reviewing a worklist in Slicer: its lesions as nodes, a status and reader per lesion, saved with the scene.

A worklist (``LesaNetCore.worklist``: CSV, JSON lines, DL_info.csv) or an SR this project wrote becomes a
*review table* node: one row per lesion (``lesion_id``, ``patient_id``, ``study``, ``source``, ``status``,
``reader``, ``sentence``) with ordered node references to each lesion's volume and lesion node (an ROI for a box,
a line for a RECIST long axis, which points to its short-axis line). The table saves with the scene, so a review
continues where it stopped after the scene is reopened; each lesion's result (with the reader's edits and
verdict) is in its results table node as for any lesion (``tables``).

Statuses: ``unreviewed``, ``accepted`` (the model's labels kept), ``corrected`` (labels edited), ``skipped``.
Accepting and correcting write the lesion to the corrections folder (``LesaNetCore.review.corrections``); skipping
takes it out again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import geometry

VOLUME_ROLE = "LesaNetReviewVolume"
LESION_ROLE = "LesaNetReviewLesion"
SHORT_AXIS_ROLE = "LesaNetShortAxis"
COLUMNS = ("lesion_id", "patient_id", "study", "source", "status", "reader", "sentence")
STATUSES = ("unreviewed", "accepted", "corrected", "skipped")
TABLE_ATTRIBUTE = "LesaNet.review"


def loadVolumeNode(path: str, seriesUid: str = "", name: str | None = None) -> Any:
    """A CT as a volume node: Slicer's own loaders in the application, else the core's reader.

    In Slicer a file is loaded by ``slicer.util.loadVolume``; a DICOM folder is imported into Slicer's DICOM
    database and the series the core's rule chooses (or ``seriesUid``) is loaded by ``DICOMUtils``, so an SR of it
    points at its images and joins them in the database. Without the application (tests, PythonSlicer) the core
    reads it and ``slicer.util.addVolumeFromArray`` makes the node.
    """
    import slicer

    source = Path(path)
    dicom = source.is_dir() or source.name.upper() == "DICOMDIR" or source.suffix.lower() == ".dcm"
    if hasattr(slicer.app, "ioManager") and not dicom:
        return slicer.util.loadVolume(str(source))
    if hasattr(slicer.app, "ioManager") and getattr(slicer, "dicomDatabase", None) is not None:
        from DICOMLib import DICOMUtils

        DICOMUtils.importDicom(str(source))
        loaded = DICOMUtils.loadSeriesByUID([seriesUid or chosenSeries(source)])
        return slicer.mrmlScene.GetNodeByID(loaded[0]) if loaded else None
    from LesaNetCore.imaging import read_volume

    volume = read_volume(str(source), series_uid=seriesUid or None)
    voxels = volume.voxels
    whole = np.abs(voxels).max() < 32767 and np.array_equal(voxels, np.round(voxels))
    return slicer.util.addVolumeFromArray(voxels.astype(np.int16) if whole else voxels,
                                          ijkToRAS=volume.ijk_to_ras_matrix(), name=name or source.stem)


def chosenSeries(source: Path) -> str:
    """The series LesaNet's rule reads from a DICOM folder (axial CT, ORIGINAL, most images), from headers only."""
    from LesaNetCore.imaging.dicom_files import dicom_headers
    from LesaNetCore.imaging.dicom_series import choose_series, group_series

    headers, _ = dicom_headers(source)
    return choose_series(group_series(headers), str(source))[0].uid


def lesionNodeFor(item: Any, volumeNode: Any, scene: Any) -> Any:
    """The worklist item's lesion as a markups node on ``volumeNode``: an ROI for a box, lines for RECIST."""
    grid = geometry.geometryFromNode(volumeNode)
    kind, values = item.input_kind, np.asarray(item.values, dtype=np.float64)
    name = f"{item.lesion_id}"
    if kind in ("box_ijk", "box_lps"):
        if kind == "box_ijk":
            i1, j1, i2, j2, k = values
            corners = np.array([[i, j, k + dk] for i in (i1, i2) for j in (j1, j2) for dk in (-0.5, 0.5)])
            lps = grid.ijk_to_lps(corners)
        else:
            x1, y1, x2, y2, z = values
            k = float(grid.lps_to_ijk([(x1 + x2) / 2, (y1 + y2) / 2, z])[2])
            thick = np.asarray(grid.ijk_to_lps([[0, 0, k - 0.5], [0, 0, k + 0.5]]))[:, 2]
            lps = np.array([[x, y, zz] for x in (x1, x2) for y in (y1, y2) for zz in thick])
        ras = lps * geometry.RAS_TO_LPS
        roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        roi.SetCenter(*((ras.min(axis=0) + ras.max(axis=0)) / 2))
        roi.SetSize(*(ras.max(axis=0) - ras.min(axis=0)))
        roi.CreateDefaultDisplayNodes()
        return roi
    if kind == "recist_ijk":
        k = values[-1]
        points = grid.ijk_to_lps([[values[n], values[n + 1], k] for n in range(0, len(values) - 1, 2)])
    else:
        z = values[-1]
        points = np.array([[values[n], values[n + 1], z] for n in range(0, len(values) - 1, 2)])
    long = _line(scene, f"{name} long axis", points[:2] * geometry.RAS_TO_LPS)
    if len(points) == 4:
        short = _line(scene, f"{name} short axis", points[2:] * geometry.RAS_TO_LPS)
        long.SetNodeReferenceID(SHORT_AXIS_ROLE, short.GetID())
    return long


def _line(scene: Any, name: str, ras: np.ndarray) -> Any:
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    for point in ras:
        line.AddControlPointWorld(*[float(v) for v in point])
    line.CreateDefaultDisplayNodes()
    return line


class ReviewSession:
    """A worklist under review, kept in a table node; see the module docstring."""

    def __init__(self, tableNode: Any) -> None:
        self.table = tableNode

    # ---------------------------------------------------------------------------------------------- make
    @classmethod
    def fromItems(cls, items: list, scene: Any, name: str = "LesaNet review", loader=loadVolumeNode,
                  progress=None) -> ReviewSession:
        """Loads every item's volume (once per volume) and makes its lesion node; returns the new session."""
        import vtk

        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
        table = vtk.vtkTable()
        for column in COLUMNS:
            array = vtk.vtkStringArray()
            array.SetName(column)
            table.AddColumn(array)
        tableNode.SetAndObserveTable(table)
        tableNode.SetAttribute(TABLE_ATTRIBUTE, "1")
        volumes: dict[tuple, Any] = {}
        for number, item in enumerate(items):
            if progress is not None:
                progress(number, len(items), item)
            if item.volume_key not in volumes:
                volumes[item.volume_key] = loader(item.volume, item.series_uid, Path(item.volume).name)
            volumeNode = volumes[item.volume_key]
            if volumeNode is None:
                from LesaNetCore.errors import invalid

                raise invalid(f"lesion {item.lesion_id!r}: volume", "must load in Slicer", item.volume)
            lesion = lesionNodeFor(item, volumeNode, scene)
            row = table.InsertNextBlankRow()
            values = {"lesion_id": item.lesion_id, "patient_id": item.patient_id, "study": item.study_key,
                      "source": item.volume, "status": "unreviewed", "reader": "", "sentence": item.sentence}
            for column in COLUMNS:
                table.GetColumnByName(column).SetValue(row, values[column])
            tableNode.AddNodeReferenceID(VOLUME_ROLE, volumeNode.GetID())
            tableNode.AddNodeReferenceID(LESION_ROLE, lesion.GetID())
        table.Modified()
        return cls(tableNode)

    # ---------------------------------------------------------------------------------------------- read
    @property
    def count(self) -> int:
        return self.table.GetTable().GetNumberOfRows()

    def value(self, row: int, column: str) -> str:
        return str(self.table.GetTable().GetColumnByName(column).GetValue(row))

    def volumeNode(self, row: int) -> Any:
        return self.table.GetNthNodeReference(VOLUME_ROLE, row)

    def lesionNode(self, row: int) -> Any:
        return self.table.GetNthNodeReference(LESION_ROLE, row)

    def shortAxisNode(self, row: int) -> Any:
        lesion = self.lesionNode(row)
        return lesion.GetNodeReference(SHORT_AXIS_ROLE) if lesion is not None else None

    def rowOf(self, lesionNode: Any) -> int | None:
        for row in range(self.count):
            node = self.lesionNode(row)
            if node is not None and lesionNode is not None and node.GetID() == lesionNode.GetID():
                return row
        return None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for row in range(self.count):
            counts[self.value(row, "status")] = counts.get(self.value(row, "status"), 0) + 1
        return counts

    def progressText(self, current: int | None) -> str:
        counts = self.counts()
        done = counts["accepted"] + counts["corrected"] + counts["skipped"]
        text = (f"{done} of {self.count} reviewed ({counts['accepted']} accepted, {counts['corrected']} corrected, "
                f"{counts['skipped']} skipped)")
        if current is not None:
            text += (f"; lesion {current + 1}: {self.value(current, 'lesion_id')} "
                     f"({self.value(current, 'status')})")
        return text

    def nextRow(self, current: int | None, step: int = 1, unreviewedOnly: bool = False) -> int | None:
        """The next (``step`` 1) or previous (-1) row from ``current``, optionally only unreviewed ones."""
        if self.count == 0:
            return None
        row = -1 if current is None and step > 0 else (self.count if current is None else current)
        for _ in range(self.count):
            row += step
            if not 0 <= row < self.count:
                return None
            if not unreviewedOnly or self.value(row, "status") == "unreviewed":
                return row
        return None

    # --------------------------------------------------------------------------------------------- write
    def setStatus(self, row: int, status: str, reader: str = "") -> None:
        from LesaNetCore.errors import invalid

        if status not in STATUSES:
            raise invalid("status", f"must be one of {list(STATUSES)}", status)
        table = self.table.GetTable()
        table.GetColumnByName("status").SetValue(row, status)
        table.GetColumnByName("reader").SetValue(row, reader)
        table.Modified()
        self.table.Modified()


def findSession(scene: Any) -> ReviewSession | None:
    """The scene's review (its most recent review table), e.g. after reopening a saved scene."""
    tables = [scene.GetNthNodeByClass(n, "vtkMRMLTableNode") for n in range(scene.GetNumberOfNodesByClass(
        "vtkMRMLTableNode"))]
    tables = [t for t in tables if t.GetAttribute(TABLE_ATTRIBUTE)]
    return ReviewSession(tables[-1]) if tables else None


def itemsFromSr(path: str, volumeNode: Any) -> tuple[list, list]:
    """Worklist items for the lesions of an SR on ``volumeNode`` (its boxes), and the SR lesions themselves."""
    import slicer

    from LesaNetCore.report.sr_lesions import read_sr_lesions
    from LesaNetCore.worklist import WorklistItem

    lesions = read_sr_lesions(path, _VolumeForSr(volumeNode, getattr(slicer, "dicomDatabase", None)))
    items = []
    for number, lesion in enumerate(lesions, start=1):
        if lesion.box_ijk is None:
            continue
        items.append(WorklistItem(lesion_id=lesion.tracking_id or f"Lesion {number}", volume=str(path),
                                  input_kind="box_ijk", values=(*lesion.box_ijk, float(lesion.key_slice)),
                                  row=number))
    return items, [lesion for lesion in lesions if lesion.box_ijk is not None]


class _VolumeForSr:
    """What ``read_sr_lesions`` needs of a volume node: its grid (LPS) and, for a DICOM series, its sources.

    ``dicom`` (the series' files from Slicer's DICOM database, their headers read) is built on first use: only an
    SR whose regions are in image coordinates of its source images needs it, and reading every header of a long
    series is the slow part.
    """

    def __init__(self, volumeNode: Any, database: Any = None) -> None:
        self._grid = geometry.geometryFromNode(volumeNode)
        self.size_ijk = self._grid.size_ijk
        self._node, self._database = volumeNode, database
        self._dicom: Any = False

    @property
    def dicom(self) -> Any:
        if self._dicom is False:
            from types import SimpleNamespace

            from LesaNetCore.imaging.dicom_volume import dicom_source

            files = geometry.dicomSeriesFiles(self._node, self._database)
            self._dicom = dicom_source(SimpleNamespace(slice_files=files)) if files else None
        return self._dicom

    def lps_to_ijk(self, lps):
        return self._grid.lps_to_ijk(lps)
