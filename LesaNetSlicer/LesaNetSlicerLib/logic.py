"""``LesaNetSlicerLogic``: annotate a lesion ROI on a volume node, keep the result in the scene, export it.

Usable without the GUI (Slicer's Python console, scripts, tests on the ``slicer-core`` wheel)::

    logic = LesaNetSlicerLogic()
    result = logic.annotate(volumeNode, roiNode)           # AnnotationResult; table node + renamed ROI
    logic.exportReport(result, "/tmp/lesion.dcm")           # SR, .json or .md by suffix

The work is split so the GUI can keep MRML on the main thread and the model on the worker thread:
``prepare`` (main thread: nodes -> Volume and box), ``predict`` (any thread, no MRML), ``store`` (main thread:
table node, ROI name). ``annotate`` runs the three in order, ``predict`` on the logic's persistent worker.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from LesaNetCore.errors import LesaNetError, invalid
from LesaNetCore.imaging import Volume
from LesaNetCore.result import AnnotationResult

from . import export, geometry, tables
from .worker import InferenceWorker

try:  # inside Slicer
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # slicer-core wheel or no Slicer at all
    ScriptedLoadableModuleLogic = object


@dataclass(frozen=True)
class AnnotationSettings:
    """What to annotate with (hashable: one loaded model per distinct setting).

    Attributes:
        modelPath: checkpoint file; empty for the shipped demo model.
        indexPath: reference-index folder; empty for the demo index with the demo model, none otherwise.
        retrieval: False disables the similar-lesion search.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        thresholdOffset: added to every calibrated threshold (more confidence > 0 > more sensitivity).
        topK: number of similar lesions.
    """

    modelPath: str = ""
    indexPath: str = ""
    retrieval: bool = True
    device: str = "auto"
    thresholdOffset: float = 0.0
    topK: int = 5

    def annotatorArguments(self) -> dict[str, Any]:
        """Keyword arguments of ``LesaNetCore.annotate.Annotator``."""
        index: Any = (str(self.indexPath) or None) if self.retrieval else False
        return {"checkpoint": str(self.modelPath) or None, "index": index, "device": self.device,
                "threshold_offset": float(self.thresholdOffset), "top_k": int(self.topK)}


@dataclass
class PreparedInput:
    """A volume and box taken from the scene on the main thread, ready for ``predict`` on any thread."""

    volume: Volume
    box: geometry.RoiBox
    volumeNodeID: str
    roiNodeID: str


@dataclass
class Record:
    """What the logic remembers about one annotated ROI."""

    result: AnnotationResult
    volume: Volume
    volumeNodeID: str
    tableNodeID: str
    history: list[AnnotationResult] = field(default_factory=list)


class LesaNetSlicerLogic(ScriptedLoadableModuleLogic):
    """Annotation, results in the scene and exports; see the module docstring.

    Args:
        scene: the MRML scene (default ``slicer.mrmlScene``).
        worker: the inference thread (default: a new one, kept for the logic's life).
    """

    def __init__(self, scene: Any = None, worker: InferenceWorker | None = None) -> None:
        if ScriptedLoadableModuleLogic is not object:
            ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self.worker = worker or InferenceWorker()
        self.settings = AnnotationSettings()
        self.records: dict[str, Record] = {}
        self._annotators: dict[AnnotationSettings, Any] = {}
        self._annotatorLock = threading.Lock()

    # ------------------------------------------------------------------------------------------------ scene
    @property
    def scene(self) -> Any:
        if self._scene is not None:
            return self._scene
        import slicer

        scene = getattr(slicer, "mrmlScene", None)
        if scene is None:
            raise LesaNetError("scene: must be given when slicer.mrmlScene does not exist, but got None")
        return scene

    # ------------------------------------------------------------------------------------------- the model
    def getAnnotator(self, settings: AnnotationSettings | None = None) -> Any:
        """The Annotator for ``settings``, loaded once and reused (thread-safe; call it on the worker)."""
        settings = settings or self.settings
        with self._annotatorLock:
            annotator = self._annotators.get(settings)
            if annotator is None:
                from LesaNetCore.annotate import Annotator

                annotator = Annotator(**settings.annotatorArguments())
                self._annotators = {settings: annotator}  # one model in memory at a time
            return annotator

    # ----------------------------------------------------------------------------------------- annotation
    def prepare(self, volumeNode: Any, roiNode: Any) -> PreparedInput:
        """Main thread: reads the volume and the ROI's world corners into the core's conventions."""
        if volumeNode is None:
            raise invalid("volume", "must be a scalar volume node (select one)", None)
        if roiNode is None:
            raise invalid("roi", "must be a markups ROI node (draw a box first)", None)
        geometry.requireSameScene(volumeNode, roiNode)
        volume = geometry.volumeFromNode(volumeNode, geometry.dicomSliceFiles(volumeNode, _dicomDatabase()))
        box = geometry.boxFromRoi(volume, roiNode)
        return PreparedInput(volume, box, volumeNode.GetID(), roiNode.GetID())

    def predict(self, prepared: PreparedInput, settings: AnnotationSettings | None = None) -> AnnotationResult:
        """Any thread (no MRML access): runs the model on the prepared patch."""
        annotator = self.getAnnotator(settings)
        return annotator.annotate(prepared.volume, **prepared.box.kwargs)

    def store(self, result: AnnotationResult, prepared: PreparedInput) -> AnnotationResult:
        """Main thread: writes the results table node and renames the ROI after the finding."""
        scene = self.scene
        roiNode = scene.GetNodeByID(prepared.roiNodeID)
        if roiNode is None:
            raise invalid("roi", "must still be in the scene when the result arrives", prepared.roiNodeID)
        tableNode = self.resultsTableNode(roiNode, create=True)
        tables.writeResultsTable(tableNode, result)
        roiNode.SetName(result.top_finding())
        tableNode.SetName(f"{result.top_finding()} (LesaNet)")
        self.records[prepared.roiNodeID] = Record(result, prepared.volume, prepared.volumeNodeID, tableNode.GetID())
        return result

    def annotate(self, volumeNode: Any, roiNode: Any, settings: AnnotationSettings | None = None,
                 timeout: float | None = None) -> AnnotationResult:
        """Annotates the lesion in ``roiNode`` on ``volumeNode``; blocks until done.

        The model runs on the logic's worker thread (the same one the GUI uses), the scene is updated here.

        Raises:
            LesaNetError: no or empty ROI, an ROI outside the volume, a non-linear volume transform, a missing
                model; other errors of the model run as raised.
        """
        prepared = self.prepare(volumeNode, roiNode)
        result = self.worker.run(self.predict, prepared, settings or self.settings, timeout=timeout)
        return self.store(result, prepared)

    # ------------------------------------------------------------------------------------------------ edits
    def resultsTableNode(self, roiNode: Any, create: bool = False) -> Any:
        """The ROI's results table node (created when ``create`` and missing)."""
        tableNode = roiNode.GetNodeReference(tables.TABLE_REFERENCE)
        if tableNode is None and create:
            tableNode = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{roiNode.GetName()} (LesaNet)")
            roiNode.SetNodeReferenceID(tables.TABLE_REFERENCE, tableNode.GetID())
            tableNode.SetNodeReferenceID(tables.ROI_REFERENCE, roiNode.GetID())
        return tableNode

    def resultFor(self, roiNode: Any) -> AnnotationResult | None:
        """The latest (edited) result of an ROI, or None."""
        record = self.records.get(roiNode.GetID()) if roiNode is not None else None
        return record.result if record else None

    def setAccepted(self, roiNode: Any, accepted: set[str] | frozenset[str]) -> AnnotationResult:
        """Replaces the ROI's accepted label set (the user's edits); updates the table node.

        Raises:
            LesaNetError: the ROI has no result, or a term is not a label of the model.
        """
        record = self.records.get(roiNode.GetID())
        if record is None:
            raise invalid("roi", "must have been annotated before its labels are edited", roiNode.GetName())
        current = set(record.result.accepted)
        edited = record.result.with_edits(accept=set(accepted) - current, reject=current - set(accepted))
        record.history.append(record.result)
        record.result = edited
        tableNode = self.scene.GetNodeByID(record.tableNodeID)
        if tableNode is not None:
            tables.updateAcceptedColumn(tableNode, edited.accepted)
            tableNode.SetAttribute("LesaNet.topFinding", edited.top_finding())
        return edited

    # ----------------------------------------------------------------------------------------------- export
    def volumeFor(self, result: AnnotationResult) -> Volume | None:
        """The Volume a result was computed on (edits keep the embedding array, which identifies it)."""
        for record in self.records.values():
            if record.result.embedding is result.embedding:
                return record.volume
        for record in self.records.values():
            if record.result.volume_source == result.volume_source:
                return record.volume
        return None

    def exportReport(self, result: AnnotationResult, path: str | os.PathLike | None = None, *,
                     suffix: str = ".json", overwrite: bool = False, volumeNode: Any = None) -> Path:
        """Writes ``result`` as an SR (.dcm), JSON or Markdown by the path's suffix.

        Args:
            result: an annotation (edited or not).
            path: output file; None or a bare file name puts it in the scene's folder (else the home folder).
            suffix: the format when ``path`` is None.
            overwrite: replace an existing file.
            volumeNode: the annotated volume, when this logic did not annotate ``result`` itself (SR only).

        An SR of a DICOM-loaded volume is also added to Slicer's DICOM database when it exists.
        """
        if path is None:
            path = export.defaultFolder(self.scene) / export.defaultFileName(result, suffix)
        path = Path(path)
        if not path.is_absolute() and str(path.parent) == ".":
            path = export.defaultFolder(self.scene) / path
        volume = geometry.volumeFromNode(volumeNode) if volumeNode is not None else self.volumeFor(result)
        written = export.writeReport([result], path, volume, overwrite)
        if export.exportKind(written) == "sr":
            export.addToDicomDatabase(written, volumeNode or self._volumeNodeFor(result), _dicomDatabase())
        return written

    def _volumeNodeFor(self, result: AnnotationResult) -> Any:
        for record in self.records.values():
            if record.result.embedding is result.embedding:
                return self.scene.GetNodeByID(record.volumeNodeID)
        return None


def _dicomDatabase() -> Any:
    """Slicer's DICOM database, or None (slicer-core, or a Slicer without the DICOM module)."""
    try:
        import slicer
    except ImportError:
        return None
    return getattr(slicer, "dicomDatabase", None)
