"""The results table node: one row per label, so saving the scene keeps the annotation and the user's edits.

Columns: ``term``, ``class``, ``score``, ``threshold``, ``decision`` (the model's, 0/1) and ``accepted`` (the
user's, 0/1). Rows are grouped by class (body part, type, attribute), highest score first, as the panel shows
them. The table references its ROI (role ``LesaNetROI``) and the ROI references its table.
"""

from __future__ import annotations

from typing import Any

from LesaNetCore.result import AnnotationResult

COLUMNS = ("term", "class", "score", "threshold", "decision", "accepted")
ROI_REFERENCE = "LesaNetROI"
TABLE_REFERENCE = "LesaNetResults"


def orderedLabels(result: AnnotationResult) -> list:
    """Labels in table order: by class, then by descending score."""
    return [label for group in result.by_class().values() for label in group]


def writeResultsTable(tableNode: Any, result: AnnotationResult) -> None:
    """Fills ``tableNode`` (a vtkMRMLTableNode) with ``result``, replacing what it held."""
    import vtk

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
    tableNode.SetAttribute("LesaNet.model", result.model)
    tableNode.SetAttribute("LesaNet.topFinding", result.top_finding())
    tableNode.EndModify(wasModifying)


def updateAcceptedColumn(tableNode: Any, accepted: frozenset[str] | set[str]) -> None:
    """Rewrites only the ``accepted`` column after the user's edits."""
    table = tableNode.GetTable()
    terms = table.GetColumnByName("term")
    column = table.GetColumnByName("accepted")
    for row in range(table.GetNumberOfRows()):
        column.SetValue(row, int(terms.GetValue(row) in accepted))
    column.Modified()
    table.Modified()
    tableNode.Modified()


def readTable(tableNode: Any) -> list[dict[str, Any]]:
    """The table's rows as dicts (for tests, scripts and reloading a saved scene)."""
    table = tableNode.GetTable()
    rows = []
    for row in range(table.GetNumberOfRows()):
        item = {}
        for name in COLUMNS:
            column = table.GetColumnByName(name)
            value = column.GetValue(row)
            item[name] = value if name in ("term", "class") else float(value)
        rows.append(item)
    return rows
