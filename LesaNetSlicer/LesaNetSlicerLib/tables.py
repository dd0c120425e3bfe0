"""The results table node: what keeps an annotation, and the reader's edits, in a saved scene.

One row per label, columns ``term``, ``class``, ``score``, ``threshold``, ``decision`` (the model's, 0/1) and
``accepted`` (the reader's, 0/1), grouped by class and sorted by score as the panel shows them; the table is
readable (and editable: the ``accepted`` column) in Slicer's Tables module. The rest of the result (location,
RECIST end points, similar lesions, embedding, model) is kept as the project's JSON report of the lesion,
without images, in the node's ``LesaNet.result`` attribute, which the scene file saves with the node; a reader's
verdict in ``LesaNet.reviewStatus`` and ``LesaNet.reader``. So a
reopened scene gives back a result that can be edited and exported: ``readResult`` takes the JSON and applies
the ``accepted`` column to it.

References: the table points to its lesion node (``LesaNetLesion``) and its volume (``LesaNetVolume``); the
lesion node points to its table (``LesaNetResults``). In the subject hierarchy the table sits beside its
volume, under the volume's study when it came from DICOM.
"""

from __future__ import annotations

import json
from typing import Any

from LesaNetCore.result import AnnotationResult

COLUMNS = ("term", "class", "score", "threshold", "decision", "accepted")
LESION_REFERENCE = "LesaNetLesion"
VOLUME_REFERENCE = "LesaNetVolume"
TABLE_REFERENCE = "LesaNetResults"
RESULT_ATTRIBUTE = "LesaNet.result"
REVIEW_STATUS_ATTRIBUTE = "LesaNet.reviewStatus"
READER_ATTRIBUTE = "LesaNet.reader"


def orderedLabels(result: AnnotationResult) -> list:
    """Labels in table order: by class, then by descending score."""
    return [label for group in result.by_class().values() for label in group]


def writeResultsTable(tableNode: Any, result: AnnotationResult) -> None:
    """Fills ``tableNode`` (a vtkMRMLTableNode) with ``result``, replacing what it held."""
    import vtk

    from LesaNetCore.report.json_report import report_to_dict

    columns = {
        "term": vtk.vtkStringArray(), "class": vtk.vtkStringArray(), "score": vtk.vtkDoubleArray(),
        "threshold": vtk.vtkDoubleArray(), "decision": vtk.vtkIntArray(), "accepted": vtk.vtkIntArray(),
    }
    for name, array in columns.items():
        array.SetName(name)
    for label in orderedLabels(result):
        columns["term"].InsertNextValue(label.term)
        columns["class"].InsertNextValue(label.label_class)
        columns["score"].InsertNextValue(float(label.score))
        columns["threshold"].InsertNextValue(float(label.threshold))
        columns["decision"].InsertNextValue(int(label.decision))
        columns["accepted"].InsertNextValue(int(label.term in result.accepted))
    table = vtk.vtkTable()
    for name in COLUMNS:
        table.AddColumn(columns[name])
    wasModifying = tableNode.StartModify()
    tableNode.SetAndObserveTable(table)
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetAttribute("LesaNet.model", result.model)
    tableNode.SetAttribute("LesaNet.topFinding", result.top_finding())
    tableNode.SetAttribute(RESULT_ATTRIBUTE, json.dumps(report_to_dict([result], include_images=False),
                                                        separators=(",", ":")))
    updateReview(tableNode, result.review_status, result.reader)  # a new result starts without an old verdict
    tableNode.EndModify(wasModifying)


def updateAcceptedColumn(tableNode: Any, accepted: frozenset[str] | set[str], topFinding: str) -> None:
    """Rewrites only the ``accepted`` column after the reader's edits."""
    table = tableNode.GetTable()
    terms = table.GetColumnByName("term")
    column = table.GetColumnByName("accepted")
    for row in range(table.GetNumberOfRows()):
        column.SetValue(row, int(terms.GetValue(row) in accepted))
    column.Modified()
    table.Modified()
    tableNode.SetAttribute("LesaNet.topFinding", topFinding)
    tableNode.Modified()


def readTable(tableNode: Any) -> list[dict[str, Any]]:
    """The table's rows as dicts."""
    table = tableNode.GetTable()
    rows = []
    for row in range(table.GetNumberOfRows()):
        item = {}
        for name in COLUMNS:
            column = table.GetColumnByName(name)
            value = column.GetValue(row)
            item[name] = str(value) if name in ("term", "class") else float(value)
        rows.append(item)
    return rows


def readResult(tableNode: Any) -> AnnotationResult | None:
    """The result kept in a table node (with the ``accepted`` column applied), or None for another table.

    Raises:
        LesaNetError: the stored JSON is damaged, or the table names a term the result does not have.
    """
    from LesaNetCore.report.json_report import report_from_dict

    text = tableNode.GetAttribute(RESULT_ATTRIBUTE) if tableNode is not None else None
    if not text:
        return None
    (result,) = report_from_dict(json.loads(text), where=f"table {tableNode.GetName()!r}")
    accepted = {row["term"] for row in readTable(tableNode) if row["accepted"]}
    edited = result.with_accepted(accepted)
    status = tableNode.GetAttribute(REVIEW_STATUS_ATTRIBUTE) or ""
    return edited.reviewed(status, tableNode.GetAttribute(READER_ATTRIBUTE) or "") if status else edited


def updateReview(tableNode: Any, status: str, reader: str) -> None:
    """Keeps a reader's verdict on the lesion's table node (saved with the scene)."""
    tableNode.SetAttribute(REVIEW_STATUS_ATTRIBUTE, status)
    tableNode.SetAttribute(READER_ATTRIBUTE, reader)


def placeInSubjectHierarchy(tableNode: Any, volumeNode: Any) -> int:
    """Puts the table beside its volume in the subject hierarchy (under the study of a DICOM-loaded CT)."""
    import slicer

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(tableNode.GetScene())
    if shNode is None:
        return 0
    volumeItem = shNode.GetItemByDataNode(volumeNode) if volumeNode is not None else 0
    parent = shNode.GetItemParent(volumeItem) if volumeItem else shNode.GetSceneItemID()
    tableItem = shNode.GetItemByDataNode(tableNode)
    if not tableItem:
        tableItem = shNode.CreateItem(parent, tableNode)
    else:
        shNode.SetItemParent(tableItem, parent)
    return tableItem
