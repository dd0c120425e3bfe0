"""Wires the logic, the worker thread and the results panel; what the module widget and the GUI tests drive.

``annotate`` reads the nodes on the main thread (``logic.prepare``), queues the model run on the logic's
persistent worker (``logic.predict``) and returns at once; a QTimer polls the job so the main thread keeps
processing events, shows elapsed time, and offers Cancel. When the job ends, the result goes to the scene
(``logic.store``) and to the panel, or its error goes to the error handler with the traceback as details.
Edits in the panel go to the logic (table node) and therefore to every export.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .qtcompat import QtCore, QtWidgets

ErrorHandler = Callable[[str, str], None]
PathChooser = Callable[[Path, str], "str | None"]


def defaultErrorHandler(message: str, details: str) -> None:
    """Slicer's error dialog when running in Slicer, else a Qt message box; both carry the details."""
    try:
        import slicer

        if hasattr(slicer, "app"):
            slicer.util.errorDisplay(message, detailedText=details)
            return
    except ImportError:
        pass
    box = QtWidgets.QMessageBox()
    box.setIcon(QtWidgets.QMessageBox.Critical)
    box.setWindowTitle("LesaNet")
    box.setText(message)
    box.setDetailedText(details)
    box.exec_() if hasattr(box, "exec_") else box.exec()


def defaultPathChooser(suggested: Path, suffix: str) -> str | None:
    """A save-file dialog (it asks before replacing a file)."""
    names = {".dcm": "DICOM Structured Report (*.dcm)", ".json": "JSON report (*.json)",
             ".md": "Markdown report (*.md)"}
    answer = QtWidgets.QFileDialog.getSaveFileName(None, "Export LesaNet report", str(suggested), names[suffix])
    path = answer[0] if isinstance(answer, tuple) else answer
    return str(path) if path else None


class AnnotationController:
    """See the module docstring.

    Args:
        logic: a ``LesaNetSlicerLogic``.
        panel: a ``ResultsPanel``.
        errorHandler: ``(message, details)``; default: Slicer's error dialog.
        pathChooser: ``(suggested path, suffix) -> path or None``; default: a save dialog.
        pollMs: how often the main thread looks at the running job.
    """

    def __init__(self, logic: Any, panel: Any, errorHandler: ErrorHandler | None = None,
                 pathChooser: PathChooser | None = None, pollMs: int = 50) -> None:
        self.logic = logic
        self.panel = panel
        self.errorHandler = errorHandler or defaultErrorHandler
        self.pathChooser = pathChooser or defaultPathChooser
        self.job = None
        self.roiNodeID: str | None = None
        self.lastExport: Path | None = None
        self.finishedCallbacks: list[Callable[[Any], None]] = []
        self._prepared = None
        self.timer = QtCore.QTimer()
        self.timer.setInterval(pollMs)
        self.timer.timeout.connect(self.poll)
        panel.cancelButton.clicked.connect(lambda *_: self.cancel())
        panel.acceptedChanged.append(self.onAcceptedChanged)
        panel.exportRequested.append(self.onExportRequested)

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.done

    def annotate(self, volumeNode: Any, roiNode: Any, settings: Any = None):
        """Starts an annotation; returns its Job, or None when the input was rejected (error shown)."""
        if self.busy:
            self.reportError("An annotation is already running; wait for it or cancel it.", "")
            return None
        try:
            prepared = self.logic.prepare(volumeNode, roiNode)
        except Exception as err:  # noqa: BLE001 - shown to the user with details, never swallowed
            self.reportError(f"Cannot annotate: {err}", traceback.format_exc())
            return None
        settings = settings or self.logic.settings
        self._prepared = prepared
        loaded = settings in getattr(self.logic, "_annotators", {})
        self.job = self.logic.worker.submit(self.logic.predict, prepared, settings, description="annotate")
        self.panel.setBusy(True, "Annotating..." if loaded else "Loading the model and annotating...")
        self.timer.start()
        return self.job

    def poll(self) -> None:
        """Timer tick on the main thread: shows progress, then delivers the result or the error."""
        job = self.job
        if job is None:
            self.timer.stop()
            return
        if not job.done:
            self.panel.statusLabel.setText(f"Annotating... {job.seconds:.1f} s")
            return
        self.timer.stop()
        self.job = None
        self.panel.setBusy(False)
        if job.cancelled:
            return
        if job.error is not None:
            self.reportError(f"Annotation failed: {job.error}", job.traceback)
            self.panel.statusLabel.setText("Annotation failed.")
            return
        try:
            result = self.logic.store(job.result, self._prepared)
        except Exception as err:  # noqa: BLE001
            self.reportError(f"Cannot store the result in the scene: {err}", traceback.format_exc())
            return
        self.roiNodeID = self._prepared.roiNodeID
        self.panel.setResult(result)
        for callback in list(self.finishedCallbacks):
            callback(result)

    def cancel(self) -> None:
        """Drops the running job (its result is discarded when it arrives) and frees the panel."""
        if self.job is not None:
            self.job.cancel()
        self.job = None
        self.timer.stop()
        self.panel.setBusy(False, "Cancelled.")

    def roiNode(self) -> Any:
        return self.logic.scene.GetNodeByID(self.roiNodeID) if self.roiNodeID else None

    def onAcceptedChanged(self, accepted: frozenset[str]) -> None:
        roi = self.roiNode()
        if roi is None:
            return
        try:
            self.logic.setAccepted(roi, accepted)
        except Exception as err:  # noqa: BLE001
            self.reportError(f"Cannot record the edit: {err}", traceback.format_exc())

    def onExportRequested(self, suffix: str) -> Path | None:
        """Asks where to write (suggesting the scene's folder) and exports the edited result."""
        roi = self.roiNode()
        result = self.logic.resultFor(roi) if roi is not None else None
        if result is None:
            self.reportError("Nothing to export yet: annotate a lesion first.", "")
            return None
        from .export import defaultFileName, defaultFolder

        suggested = defaultFolder(self.logic.scene) / defaultFileName(result, suffix)
        path = self.pathChooser(suggested, suffix)
        if not path:
            return None
        try:
            # The save dialog already asked before replacing a file.
            self.lastExport = self.logic.exportReport(result, path, overwrite=True)
        except Exception as err:  # noqa: BLE001
            self.reportError(f"Export failed: {err}", traceback.format_exc())
            return None
        self.panel.statusLabel.setText(f"Exported {self.lastExport.name}")
        return self.lastExport

    def reportError(self, message: str, details: str) -> None:
        self.errorHandler(message, details)
