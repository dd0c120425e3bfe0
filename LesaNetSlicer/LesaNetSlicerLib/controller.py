"""Wires the logic, its tasks and the results panel: what the module widget and the GUI tests drive.

One task runs at a time (an annotation, an export or a package installation). ``annotate`` reads the nodes on
the main thread (``logic.prepare``) and returns at once; a QTimer steps the task, each step bounded to a few
milliseconds, so Slicer keeps drawing; the panel shows the task's status, elapsed time and Cancel. When the
task ends the result goes to the panel (it is already in the scene) or the error to the error handler, with the
worker's traceback as details. The panel shows the result of the lesion node the user selected
(``showLesion``), rebuilt from its table node when the scene was reopened; edits go to the logic (the table
node) and so to every export.
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

        if getattr(slicer, "app", None) is not None:
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
        logic: a ``LesaNetLogic``.
        panel: a ``ResultsPanel``.
        errorHandler: ``(message, details)``; default: Slicer's error dialog.
        pathChooser: ``(suggested path, suffix) -> path or None``; default: a save dialog.
        pollMs: the timer interval; each tick does at most ``stepBudget`` seconds of work.
    """

    def __init__(self, logic: Any, panel: Any, errorHandler: ErrorHandler | None = None,
                 pathChooser: PathChooser | None = None, pollMs: int = 20, stepBudget: float = 0.015) -> None:
        self.logic = logic
        self.panel = panel
        self.errorHandler = errorHandler or defaultErrorHandler
        self.pathChooser = pathChooser or defaultPathChooser
        self.stepBudget = stepBudget
        self.task = None
        self.taskKind = ""
        self.lesionNodeID: str | None = None
        self.lastExport: Path | None = None
        self.finishedCallbacks: list[Callable[[str, Any], None]] = []  # (kind, task) after every task
        self._onTaskDone: Callable[[Any], None] | None = None
        self.timer = QtCore.QTimer()
        self.timer.setInterval(pollMs)
        self.timer.timeout.connect(self.poll)
        panel.cancelButton.clicked.connect(lambda *_: self.cancel())
        panel.acceptedChanged.append(self.onAcceptedChanged)
        panel.exportRequested.append(self.onExportRequested)

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done

    # ------------------------------------------------------------------------------------------- tasks
    def _start(self, kind: str, task: Any, message: str, onDone: Callable[[Any], None]) -> Any:
        self.task, self.taskKind, self._onTaskDone = task, kind, onDone
        self.panel.setBusy(True, message)
        self.timer.start()
        self.poll()
        return task

    def annotate(self, volumeNode: Any, lesionNode: Any, settings: Any = None, shortAxisNode: Any = None):
        """Starts an annotation; returns its task, or None when the input was rejected (error shown)."""
        if self.busy:
            self.reportError("LesaNet is busy; wait for it or click Cancel.", "")
            return None
        try:
            prepared = self.logic.prepare(volumeNode, lesionNode, shortAxisNode)
            task = self.logic.startAnnotation(prepared, settings)
        except Exception as err:  # noqa: BLE001 - shown to the user with details, never swallowed
            self.reportError(f"Cannot annotate: {err}", traceback.format_exc())
            return None
        self.lesionNodeID = prepared.lesionNodeID
        self.panel.setInputDescription(prepared.lesion.description)

        def done(result):
            if self.lesionNodeID == prepared.lesionNodeID:
                self.panel.setResult(result)

        return self._start("annotate", task, f"Annotating the {prepared.lesion.description}...", done)

    def install(self, task: Any, then: Callable[[], None] | None = None):
        """Runs a ``dependencies.InstallTask``; ``then`` runs when it succeeded (e.g. the annotation)."""
        if self.busy:
            self.reportError("LesaNet is busy; wait for it or click Cancel.", "")
            return None

        def done(_):
            self.logic.resetWorker()  # a new worker sees the new packages
            if then is not None:
                then()

        return self._start("install", task, task.status, done)

    def poll(self) -> None:
        """Timer tick on the main thread: one bounded step, the status line, then the outcome."""
        task = self.task
        if task is None:
            self.timer.stop()
            return
        task.step(self.stepBudget)
        if not task.done:
            self.panel.statusLabel.setText(f"{task.status} {getattr(task, 'seconds', 0.0):.1f} s")
            return
        self.timer.stop()
        self.panel.setBusy(False)
        kind, onDone = self.taskKind, self._onTaskDone
        self.task, self._onTaskDone = None, None
        try:
            if task.cancelled:
                self.panel.statusLabel.setText("Cancelled.")
            elif task.error is not None:
                details = getattr(task.error, "details", "") or getattr(task, "details", "") or ""
                self.reportError(f"LesaNet {kind} failed: {task.error}", details)
                self.panel.statusLabel.setText(f"{kind.capitalize()} failed.")
            else:
                onDone(task.result)
        except Exception as err:  # noqa: BLE001 - shown to the user with details, never swallowed
            self.reportError(f"LesaNet {kind}: {err}", traceback.format_exc())
        finally:
            for callback in list(self.finishedCallbacks):
                callback(kind, task)

    def cancel(self) -> None:
        """Stops the running task (see ``logic.Task.cancel``) and frees the panel."""
        if self.task is not None:
            self.task.cancel()
            self.poll()
        self.timer.stop()
        self.panel.setBusy(False, "Cancelled.")

    # ---------------------------------------------------------------------------------------- selection
    def showLesion(self, lesionNode: Any) -> None:
        """Shows the selected lesion's result (from the scene after a reopen), or an empty panel."""
        if self.busy and self.taskKind == "annotate":
            return
        try:
            result = self.logic.resultFor(lesionNode)
        except Exception as err:  # noqa: BLE001
            self.reportError(f"Cannot read the stored result: {err}", traceback.format_exc())
            result = None
        self.lesionNodeID = lesionNode.GetID() if lesionNode is not None else None
        if result is None:
            self.panel.clear("Draw a box or measure a lesion, then click Annotate." if lesionNode is None else
                             f"{lesionNode.GetName()}: not annotated yet. Click Annotate.")
        else:
            self.panel.setResult(result)

    def lesionNode(self) -> Any:
        return self.logic.scene.GetNodeByID(self.lesionNodeID) if self.lesionNodeID else None

    # ---------------------------------------------------------------------------------------- edits, export
    def onAcceptedChanged(self, accepted: frozenset[str]) -> None:
        lesion = self.lesionNode()
        if lesion is None:
            return
        try:
            self.logic.setAccepted(lesion, accepted)
        except Exception as err:  # noqa: BLE001
            self.reportError(f"Cannot record the edit: {err}", traceback.format_exc())

    def onExportRequested(self, suffix: str):
        """Asks where to write (suggesting the scene's folder) and exports the edited result."""
        lesion = self.lesionNode()
        result = self.logic.resultFor(lesion) if lesion is not None else None
        if result is None:
            self.reportError("Nothing to export yet: annotate a lesion first.", "")
            return None
        if self.busy:
            self.reportError("LesaNet is busy; wait for it or click Cancel.", "")
            return None
        from .export import defaultFileName, defaultFolder

        suggested = defaultFolder(self.logic.scene) / defaultFileName(result, suffix)
        path = self.pathChooser(suggested, suffix)
        if not path:
            return None
        try:  # the save dialog already asked before replacing a file
            task = self.logic.startExport(result, path, overwrite=True)
        except Exception as err:  # noqa: BLE001
            self.reportError(f"Export failed: {err}", traceback.format_exc())
            return None

        def done(written):
            self.lastExport = Path(written)
            self.panel.statusLabel.setText(f"Exported {self.lastExport.name}")

        return self._start("export", task, f"Exporting {Path(path).name}...", done)

    def reportError(self, message: str, details: str) -> None:
        self.errorHandler(message, details)
