"""The module's logic: annotate a lesion on a volume node in the worker process, keep results in the scene, export.

Usable without the GUI (Slicer's Python console, scripts, tests)::

    logic = slicer.util.getModuleLogic("LesaNetSlicer")  # or LesaNetSlicer.LesaNetSlicerLogic()
    result = logic.annotate(volumeNode, roiNode)        # or a markups line: a RECIST long axis
    logic.exportReport(result, "/tmp/lesion.dcm")         # SR, .json or .md by suffix

Every piece of work is a ``Task`` advanced by ``step()`` without blocking: the GUI steps it from a QTimer, the
synchronous calls above step it in a loop. A task first makes sure the worker holds the volume (``volumes``:
once per node and modification), then sends its request and waits for the answer. Only the main thread touches
MRML: ``prepare`` reads the nodes (grid and lesion, no voxels), ``store`` writes the table node, names the lesion
node after the finding and files the table in the subject hierarchy.

Nothing keeps a copy of the voxels in Slicer's process: a ``Record`` holds the result and node IDs only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from LesaNetCore.errors import LesaNetError, invalid
from LesaNetCore.result import AnnotationResult

from . import export, geometry, tables
from .volumes import VolumeUpload, volumeKey
from .worker import Request, WorkerError, WorkerProcess

try:
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # outside Slicer's Python layer: the logic still works on a given scene
    ScriptedLoadableModuleLogic = object


@dataclass(frozen=True)
class AnnotationSettings:
    """What to annotate with (hashable: the worker keeps one model per distinct setting).

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
    """The nodes of one annotation, read on the main thread."""

    volumeNodeID: str
    lesionNodeID: str
    lesion: geometry.LesionInput
    shortAxisNodeID: str | None = None


@dataclass
class Record:
    """What the logic remembers about one annotated lesion node (no voxels)."""

    result: AnnotationResult
    volumeNodeID: str
    tableNodeID: str


class Task:
    """Work for the worker on one volume: send the volume if needed, then one request; see the module docstring.

    Attributes:
        status: a sentence for the panel ("Sending the volume (40%)...", "Loading the model...").
        result: the request's answer once ``done`` (None on failure or cancel).
        error: the ``WorkerError`` or ``LesaNetError`` that ended it, else None.
    """

    def __init__(self, logic: LesaNetLogic, volumeNode: Any, kind: str, payload: dict,
                 finish=None) -> None:
        self.logic = logic
        self.kind = kind
        self.payload = payload
        self.finish = finish
        self.status = "Starting..."
        self.result: Any = None
        self.error: Exception | None = None
        self.cancelled = False
        self.done = False
        self.started = time.perf_counter()
        self.finished = 0.0
        self._request: Request | None = None
        self._volumeRequest: Request | None = None
        self._upload: VolumeUpload | None = None
        self._key = None
        if volumeNode is not None:
            self._key = volumeKey(volumeNode)
            self.payload["volumeKey"] = self._key
            if not logic.workerHasVolume(self._key):
                self._upload = VolumeUpload(volumeNode, logic.temporaryFolder,
                                            geometry.dicomSeriesFiles(volumeNode, logic.dicomDatabase()))

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def step(self, budget: float = 0.015) -> bool:
        """Advances without blocking for much longer than ``budget`` seconds; True once done."""
        if self.done:
            return True
        try:
            self._advance(budget)
        except (WorkerError, LesaNetError, OSError) as err:
            self._end(error=err)
        return self.done

    def _advance(self, budget: float) -> None:
        worker = self.logic.worker
        if self._upload is not None and not self._upload.done:
            if self._upload.step(budget):
                self.status = "Loading the volume in the worker..."
                self._volumeRequest = worker.submit("loadVolume", **self._upload.request())
            else:
                self.status = f"Sending the volume to the worker ({self._upload.fraction:.0%})..."
            return
        worker.poll()
        if self._volumeRequest is not None:
            if not self._volumeRequest.done:
                self.status = self._volumeRequest.progress or self.status
                return
            self._upload.discard()
            if self._volumeRequest.error is not None:
                raise self._volumeRequest.error
            self.logic.noteVolumeLoaded(self._key)
            self._volumeRequest = None
        if self._request is None:
            self._request = worker.submit(self.kind, **self.payload)
            self.status = "Waiting for the worker..."
            return
        if not self._request.done:
            self.status = self._request.progress or self.status
            return
        if self._request.error is not None:
            raise self._request.error
        result = self._request.result
        self._end(result=self.finish(result) if self.finish else result)

    def cancel(self) -> None:
        """Stops the task: an upload is abandoned, a request is cancelled in the worker (see ``worker``)."""
        if self.done:
            return
        self.cancelled = True
        if self._upload is not None:
            self._upload.discard()
        for request in (self._volumeRequest, self._request):
            if request is not None:
                self.logic.worker.cancel(request)
        self._end(error=WorkerError("cancelled", "cancelled"))

    def _end(self, result: Any = None, error: Exception | None = None) -> None:
        if self._upload is not None and (error is not None or self._upload.done):
            self._upload.discard()
        self.result, self.error, self.done = result, error, True
        self.finished = time.perf_counter()
        self.status = "Done." if error is None else ("Cancelled." if self.cancelled else f"Failed: {error}")

    def wait(self, timeout: float | None = None) -> Any:
        """Steps until done (scripts); returns the result or raises the error."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self.step(budget=0.2):
            if deadline is not None and time.perf_counter() > deadline:
                self.cancel()
                raise WorkerError(f"{self.kind}: not done within {timeout} s", "timeout",
                                  self.logic.worker.logTail())
            time.sleep(0.002)
        if self.error is not None:
            raise self.error
        return self.result


class LesaNetLogic(ScriptedLoadableModuleLogic):
    """Annotation, results in the scene and exports; see the module docstring.

    Args:
        scene: the MRML scene (default ``slicer.mrmlScene``).
        worker: the inference worker (default: one started on first use with Slicer's Python).
    """

    def __init__(self, scene: Any = None, worker: WorkerProcess | None = None) -> None:
        if ScriptedLoadableModuleLogic is not object:
            ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self._worker = worker
        self._temporary: str | None = None
        self._loadedVolumes: dict[tuple, int] = {}
        self.settings = AnnotationSettings()
        self.records: dict[str, Record] = {}

    # ------------------------------------------------------------------------------------------ plumbing
    @property
    def scene(self) -> Any:
        if self._scene is not None:
            return self._scene
        import slicer

        scene = getattr(slicer, "mrmlScene", None)
        if scene is None:
            raise LesaNetError("scene: must be given when slicer.mrmlScene does not exist, but got None")
        return scene

    @property
    def worker(self) -> WorkerProcess:
        """The inference worker process (created on first use; the process starts with the first request)."""
        if self._worker is None:
            from . import dependencies, paths

            self._worker = WorkerProcess(pythonPath=[*dependencies.workerPath(), str(paths.coreRoot())])
        return self._worker

    @property
    def temporaryFolder(self) -> Path:
        if self._temporary is None or not os.path.isdir(self._temporary):
            self._temporary = tempfile.mkdtemp(prefix="lesanet-volumes-")
        return Path(self._temporary)

    def workerHasVolume(self, key: tuple) -> bool:
        return self._worker is not None and self._worker.alive and self._loadedVolumes.get(key) == \
            self._worker.generation

    def noteVolumeLoaded(self, key: tuple) -> None:
        self._loadedVolumes[key] = self.worker.generation

    def dicomDatabase(self) -> Any:
        """Slicer's DICOM database, or None (no DICOM module, or outside Slicer)."""
        try:
            import slicer
        except ImportError:
            return None
        return getattr(slicer, "dicomDatabase", None)

    def resetWorker(self) -> None:
        """Stops the worker; the next request starts a new one (with the packages installed meanwhile)."""
        if self._worker is not None:
            self._worker.shutdown()
        self._worker = None
        self._loadedVolumes.clear()

    def shutdown(self) -> None:
        """Stops the worker process and removes the temporary files (module cleanup, tests)."""
        if self._worker is not None:
            self._worker.shutdown()
        self._loadedVolumes.clear()
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    # ---------------------------------------------------------------------------------------- annotation
    def prepare(self, volumeNode: Any, lesionNode: Any, shortAxisNode: Any = None) -> PreparedInput:
        """Main thread: the lesion (ROI or RECIST lines) on the volume's grid, in the core's conventions."""
        if volumeNode is None:
            raise invalid("volume", "must be a scalar volume node (select one)", None)
        geometry.requireSameScene(volumeNode, lesionNode, shortAxisNode)
        lesion = geometry.lesionInput(geometry.geometryFromNode(volumeNode), lesionNode, shortAxisNode)
        return PreparedInput(volumeNode.GetID(), lesionNode.GetID(), lesion,
                             shortAxisNode.GetID() if shortAxisNode is not None else None)

    def startAnnotation(self, prepared: PreparedInput, settings: AnnotationSettings | None = None) -> Task:
        """A task that annotates ``prepared`` in the worker and stores the result in the scene when done."""
        settings = settings or self.settings
        volumeNode = self.scene.GetNodeByID(prepared.volumeNodeID)
        payload = {"settings": settings.annotatorArguments(), "input": dict(prepared.lesion.kwargs)}
        return Task(self, volumeNode, "annotate", payload, finish=lambda result: self.store(result, prepared))

    def annotate(self, volumeNode: Any, lesionNode: Any, settings: AnnotationSettings | None = None,
                 shortAxisNode: Any = None, timeout: float | None = None) -> AnnotationResult:
        """Annotates the lesion of ``lesionNode`` (an ROI, or a RECIST long-axis line) and waits for it.

        Raises:
            LesaNetError: a bad input (no or empty ROI, outside the volume, a non-linear transform, a missing
                model); WorkerError: the worker failed, crashed or timed out.
        """
        return self.startAnnotation(self.prepare(volumeNode, lesionNode, shortAxisNode), settings).wait(timeout)

    def store(self, result: AnnotationResult, prepared: PreparedInput) -> AnnotationResult:
        """Main thread: the results table node, the lesion node's name, the subject hierarchy."""
        scene = self.scene
        lesionNode = scene.GetNodeByID(prepared.lesionNodeID)
        if lesionNode is None:
            raise invalid("lesion", "must still be in the scene when the result arrives", prepared.lesionNodeID)
        tableNode = self.resultsTableNode(lesionNode, create=True)
        tables.writeResultsTable(tableNode, result)
        tableNode.SetNodeReferenceID(tables.VOLUME_REFERENCE, prepared.volumeNodeID)
        lesionNode.SetName(result.top_finding())
        tableNode.SetName(f"{result.top_finding()} (LesaNet)")
        tables.placeInSubjectHierarchy(tableNode, scene.GetNodeByID(prepared.volumeNodeID))
        self.records[prepared.lesionNodeID] = Record(result, prepared.volumeNodeID, tableNode.GetID())
        return result

    # --------------------------------------------------------------------------------------------- results
    def resultsTableNode(self, lesionNode: Any, create: bool = False) -> Any:
        """The lesion node's results table node (created when ``create`` and missing)."""
        tableNode = lesionNode.GetNodeReference(tables.TABLE_REFERENCE)
        if tableNode is None and create:
            tableNode = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{lesionNode.GetName()} (LesaNet)")
            lesionNode.SetNodeReferenceID(tables.TABLE_REFERENCE, tableNode.GetID())
            tableNode.SetNodeReferenceID(tables.LESION_REFERENCE, lesionNode.GetID())
        return tableNode

    def record(self, lesionNode: Any) -> Record | None:
        """The lesion's record, rebuilt from its table node after a scene was reopened."""
        if lesionNode is None:
            return None
        record = self.records.get(lesionNode.GetID())
        if record is not None and self.scene.GetNodeByID(record.tableNodeID) is not None:
            return record
        tableNode = lesionNode.GetNodeReference(tables.TABLE_REFERENCE)
        result = tables.readResult(tableNode)
        if result is None:
            self.records.pop(lesionNode.GetID(), None)
            return None
        volumeNode = tableNode.GetNodeReference(tables.VOLUME_REFERENCE)
        record = Record(result, volumeNode.GetID() if volumeNode is not None else "", tableNode.GetID())
        self.records[lesionNode.GetID()] = record
        return record

    def resultFor(self, lesionNode: Any) -> AnnotationResult | None:
        """The latest (edited) result of a lesion node, or None."""
        record = self.record(lesionNode)
        return record.result if record else None

    def setAccepted(self, lesionNode: Any, accepted: set[str] | frozenset[str]) -> AnnotationResult:
        """Replaces the lesion's accepted label set (the reader's edits); updates the table node.

        Raises:
            LesaNetError: the lesion has no result, or a term is not a label of the model.
        """
        record = self.record(lesionNode)
        if record is None:
            raise invalid("lesion", "must have been annotated before its labels are edited",
                          lesionNode.GetName() if lesionNode is not None else None)
        edited = record.result.with_accepted(accepted)
        record.result = edited
        tableNode = self.scene.GetNodeByID(record.tableNodeID)
        if tableNode is not None:
            tables.updateAcceptedColumn(tableNode, edited.accepted, edited.top_finding())
        return edited

    def setReview(self, lesionNode: Any, status: str, reader: str = "") -> AnnotationResult:
        """Records a reader's verdict on the lesion's result and table node (see ``review``)."""
        record = self.record(lesionNode)
        if record is None:
            raise invalid("lesion", "must have been annotated before it is reviewed",
                          lesionNode.GetName() if lesionNode is not None else None)
        record.result = record.result.reviewed(status, reader)
        tableNode = self.scene.GetNodeByID(record.tableNodeID)
        if tableNode is not None:
            tables.updateReview(tableNode, status, reader)
        return record.result

    def writeCorrection(self, lesionNode: Any, folder: str | os.PathLike, lesionId: str,
                        patientId: str = "") -> Path | None:
        """Keeps the reviewed lesion as training data in ``folder`` (``LesaNetCore.review.corrections``).

        Raises:
            LesaNetError: the lesion has no result, or its result lost its patch (a result rebuilt from a reopened
                scene carries none: annotate the lesion again).
        """
        from LesaNetCore.review import write_correction

        result = self.resultFor(lesionNode)
        if result is None:
            raise invalid("lesion", "must have been annotated before it becomes training data",
                          lesionNode.GetName() if lesionNode is not None else None)
        return write_correction(folder, result, lesionId, patientId)

    # ---------------------------------------------------------------------------------------------- export
    def startExport(self, result: AnnotationResult, path: str | os.PathLike | None = None, *,
                    suffix: str = ".json", overwrite: bool = False, volumeNode: Any = None) -> Task:
        """A task writing ``result`` as an SR (.dcm), JSON or Markdown by the path's suffix.

        The SR is written in the worker (highdicom and its pydicom may be the worker's own, see
        ``dependencies``), JSON and Markdown here. An SR of a DICOM-loaded volume is also added to Slicer's
        DICOM database.
        """
        path = self._exportPath(result, path, suffix)
        kind = export.exportKind(path)
        volumeNode = volumeNode or self.volumeNodeFor(result)
        if kind != "sr":
            written = export.writeReport([result], path, overwrite, disclaimer=self._disclaimer())
            task = Task(self, None, "", {})
            task._end(result=written)
            return task
        if volumeNode is None:
            raise invalid("volume", "must be the annotated volume to write an SR (its geometry and DICOM source)",
                          None)
        if path.exists() and not overwrite:
            raise invalid("path", "must not exist (pass overwrite=True to replace it)", str(path))

        def finish(written: str) -> Path:
            export.addToDicomDatabase(written, volumeNode, self.dicomDatabase())
            return Path(written)

        payload = {"results": [result], "path": str(path), "overwrite": overwrite}
        return Task(self, volumeNode, "exportReport", payload, finish=finish)

    def exportReport(self, result: AnnotationResult, path: str | os.PathLike | None = None, *,
                     suffix: str = ".json", overwrite: bool = False, volumeNode: Any = None,
                     timeout: float | None = None) -> Path:
        """``startExport`` and wait; returns the written path."""
        return self.startExport(result, path, suffix=suffix, overwrite=overwrite, volumeNode=volumeNode).wait(timeout)

    def _exportPath(self, result: AnnotationResult, path, suffix: str) -> Path:
        if path is None:
            return export.defaultFolder(self.scene) / export.defaultFileName(result, suffix)
        path = Path(path)
        if not path.is_absolute() and str(path.parent) == ".":
            path = export.defaultFolder(self.scene) / path
        return path

    def _disclaimer(self) -> str | None:
        return None if self.settings.modelPath else "Demo model trained on phantoms; not for clinical use."

    def volumeNodeFor(self, result: AnnotationResult) -> Any:
        """The volume node a result was computed on (edits keep the embedding array, which identifies it)."""
        for record in self.records.values():
            if record.result.embedding is result.embedding or record.result is result:
                return self.scene.GetNodeByID(record.volumeNodeID)
        for record in self.records.values():
            if record.result.location == result.location and record.result.model == result.model:
                return self.scene.GetNodeByID(record.volumeNodeID)
        return None
