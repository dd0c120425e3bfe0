"""Exports by file suffix (``.dcm`` SR, ``.json``, ``.md``), default folders, and the DICOM database.

The formats themselves live in ``LesaNetCore.report``; this module picks the format, writes JSON and Markdown
(the SR is written by the worker process, which has highdicom), proposes where to write (next to the saved
scene, else the home folder) and, for an SR of a DICOM-loaded volume, adds the new SR to Slicer's DICOM database
so it shows up beside its images.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from LesaNetCore.errors import invalid
from LesaNetCore.result import AnnotationResult

SUFFIXES = {".dcm": "sr", ".json": "json", ".md": "markdown"}


def exportKind(path: str | os.PathLike) -> str:
    """``"sr"``, ``"json"`` or ``"markdown"`` from the suffix; raises LesaNetError naming the path otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise invalid("path", f"must end with one of {sorted(SUFFIXES)}", str(path))
    return SUFFIXES[suffix]


def writeReport(results: list[AnnotationResult], path: str | os.PathLike, overwrite: bool = False,
                disclaimer: str | None = None) -> Path:
    """Writes ``results`` as JSON or Markdown (by suffix), atomically.

    Raises:
        LesaNetError: an unknown suffix or an SR path (the worker writes SRs), or an existing file without
            ``overwrite``.
    """
    kind = exportKind(path)
    if kind == "json":
        from LesaNetCore.report import write_json_report

        return write_json_report(results, path, overwrite)
    if kind == "markdown":
        from LesaNetCore.report import write_markdown_report

        return write_markdown_report(results, path, overwrite, disclaimer=disclaimer)
    raise invalid("path", "must be a .json or .md file here (SRs are written by the worker)", str(path))


def defaultFolder(scene: Any = None) -> Path:
    """Where exports go by default: the saved scene's folder, else the home folder."""
    if scene is not None:
        url = scene.GetURL() or ""
        root = scene.GetRootDirectory() or ""
        for candidate in (Path(url).parent if url else None, Path(root) if root and root != "." else None):
            if candidate is not None and candidate.is_dir():
                return candidate
    return Path.home()


def defaultFileName(result: AnnotationResult, suffix: str) -> str:
    """A file name from the volume and the finding, e.g. ``CT_liver_mass_lesanet.dcm``."""
    stem = f"{result.volume_source or 'volume'}_{result.top_finding()}_lesanet"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") + suffix


def addToDicomDatabase(path: str | os.PathLike, volumeNode: Any, database: Any) -> bool:
    """Adds an SR of a DICOM-loaded volume to Slicer's DICOM database; returns whether it was added.

    Only an SR that references real source images belongs there; a NIfTI-based SR would appear as a new,
    unrelated patient.
    """
    if database is None or volumeNode is None or Path(path).suffix.lower() != ".dcm":
        return False
    if not (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").strip():
        return False
    database.insert(str(path))
    return True
