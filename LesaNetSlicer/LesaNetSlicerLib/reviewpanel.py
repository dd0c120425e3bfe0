"""The module's *Review a worklist* section: load a list (or an SR), walk it, record verdicts, export.

Wires the section's widgets to a :class:`review.ReviewSession` (the scene's review table), the logic and the
annotation controller:

* **Load** reads a worklist (``LesaNetCore.worklist``), loads its CTs and makes its lesion nodes; **Load SR** does
  the same for the lesions of an SR of the selected CT and, once each is annotated, applies the SR's labels and
  verdict, so a review saved as an SR continues where it stopped;
* **Previous** / **Next** (Ctrl+Shift+Left / Right anywhere in Slicer) select the lesion (the panel follows it),
  jump the slice views to it and annotate it in the worker when it has no result yet;
* **Accept labels** (Ctrl+Shift+Return) records *accepted*, or *corrected* when the reader edited the labels, with
  the reader's name, writes the lesion to the corrections folder and moves to the next unreviewed lesion; **Skip**
  (Ctrl+Shift+S) records *skipped* and takes it out of the corrections;
* **Export review** writes results.json, summary.csv and the model-against-reader agreement beside the worklist.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from .qtcompat import QtGui, QtWidgets
from .review import ReviewSession, findSession, itemsFromSr

SHORTCUTS = {"next": "Ctrl+Shift+Right", "previous": "Ctrl+Shift+Left", "accept": "Ctrl+Shift+Return",
             "skip": "Ctrl+Shift+S"}


def chooseFile(title: str, filters: str) -> str | None:
    answer = QtWidgets.QFileDialog.getOpenFileName(None, title, "", filters)
    path = answer[0] if isinstance(answer, tuple) else answer
    return str(path) if path else None


class ReviewController:
    """See the module docstring. ``widget`` is the module widget (its ``ui``, ``logic``, ``controller``)."""

    def __init__(self, widget: Any, fileChooser=chooseFile) -> None:
        self.widget = widget
        self.fileChooser = fileChooser
        self.pending: dict[str, Any] = {}  # lesion node ID -> SR lesion whose labels await its annotation
        self.lastExport: Path | None = None
        ui = widget.ui
        ui.loadWorklistButton.clicked.connect(lambda *_: self.run(self.loadWorklist))
        ui.loadSrButton.clicked.connect(lambda *_: self.run(self.loadSr))
        ui.previousButton.clicked.connect(lambda *_: self.run(self.step, -1))
        ui.nextButton.clicked.connect(lambda *_: self.run(self.step, 1))
        ui.acceptButton.clicked.connect(lambda *_: self.run(self.accept))
        ui.skipButton.clicked.connect(lambda *_: self.run(self.skip))
        ui.exportReviewButton.clicked.connect(lambda *_: self.run(self.exportReview))
        self.shortcuts = {}
        for name, keys in SHORTCUTS.items():
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(keys), widget.parent) if hasattr(QtGui, "QShortcut") \
                else QtWidgets.QShortcut(QtGui.QKeySequence(keys), widget.parent)
            shortcut.setContext(_applicationContext())
            action = {"next": lambda: self.run(self.step, 1), "previous": lambda: self.run(self.step, -1),
                      "accept": lambda: self.run(self.accept), "skip": lambda: self.run(self.skip)}[name]
            shortcut.activated.connect(action)
            self.shortcuts[name] = shortcut
        widget.controller.finishedCallbacks.append(self.onTaskFinished)
        self.refresh()

    # ---------------------------------------------------------------------------------------------- state
    @property
    def parameters(self) -> Any:
        return self.widget._parameterNode

    @property
    def session(self) -> ReviewSession | None:
        table = self.parameters.reviewTable if self.parameters is not None else None
        if table is not None:
            return ReviewSession(table)
        return findSession(self.widget.logic.scene)

    def currentRow(self) -> int | None:
        session = self.session
        if session is None or self.parameters is None:
            return None
        return session.rowOf(self.parameters.lesion)

    def correctionsFolder(self) -> Path | None:
        text = self.parameters.correctionsPath if self.parameters is not None else ""
        if text:
            return Path(text)
        worklist = self.parameters.worklistPath if self.parameters is not None else ""
        return Path(worklist).with_name(f"{Path(worklist).stem}-corrections") if worklist else None

    def run(self, action, *args) -> Any:
        """A user action: errors go to the module's error handler (with details), never lost."""
        try:
            return action(*args)
        except Exception as err:  # noqa: BLE001 - shown to the user with details, never swallowed
            self.widget.controller.reportError(f"Review: {err}", traceback.format_exc())
            return None

    def refresh(self) -> None:
        session, ui = self.session, self.widget.ui
        reviewing = session is not None and session.count > 0
        for button in (ui.previousButton, ui.nextButton, ui.acceptButton, ui.skipButton, ui.exportReviewButton):
            button.setEnabled(reviewing)
        ui.reviewProgressLabel.setText(session.progressText(self.currentRow()) if reviewing else "No worklist loaded.")

    # ------------------------------------------------------------------------------------------- actions
    def loadWorklist(self, path: str | None = None) -> ReviewSession:
        """Loads a worklist's CTs and lesions and selects its first unreviewed lesion."""
        from LesaNetCore.worklist import read_worklist

        path = path or self.widget.ui.worklistPathLineEdit.currentPath or self.fileChooser(
            "LesaNet worklist", "Worklist (*.csv *.jsonl *.json)")
        if not path:
            return None
        items = read_worklist(path)
        session = ReviewSession.fromItems(items, self.widget.logic.scene, name=f"{Path(path).stem} (LesaNet review)")
        self.parameters.worklistPath = str(path)
        self.parameters.reviewTable = session.table
        self.goto(session.nextRow(None, unreviewedOnly=True) or 0)
        return session

    def loadSr(self, path: str | None = None) -> ReviewSession:
        """The lesions of an SR of the selected CT, to be annotated and given the SR's labels and verdicts."""
        volumeNode = self.parameters.inputVolume
        if volumeNode is None:
            from LesaNetCore.errors import invalid

            raise invalid("CT volume", "must be selected: the SR's boxes are placed on it", None)
        path = path or self.fileChooser("LesaNet structured report", "DICOM SR (*.dcm)")
        if not path:
            return None
        items, lesions = itemsFromSr(path, volumeNode)
        session = ReviewSession.fromItems(items, self.widget.logic.scene, name=f"{Path(path).stem} (LesaNet review)",
                                          loader=lambda *args: volumeNode)
        for row, lesion in enumerate(lesions):
            self.pending[session.lesionNode(row).GetID()] = lesion
        self.parameters.worklistPath = str(path)
        self.parameters.reviewTable = session.table
        self.goto(0)
        return session

    def goto(self, row: int | None) -> None:
        """Selects lesion ``row``: the panel follows, the slice views jump to it, it is annotated if need be."""
        session = self.session
        if session is None or row is None or not 0 <= row < session.count:
            self.refresh()
            return
        p = self.parameters
        lesion = session.lesionNode(row)
        p.inputVolume = session.volumeNode(row)
        p.shortAxis = session.shortAxisNode(row)
        p.lesion = lesion
        self._jumpTo(lesion)
        if self.widget.logic.resultFor(lesion) is None and not self.widget.controller.busy:
            self.widget._annotateNow()
        self.refresh()

    def step(self, direction: int) -> None:
        session = self.session
        if session is not None:
            target = session.nextRow(self.currentRow(), direction)
            if target is not None:
                self.goto(target)

    def accept(self) -> None:
        """Accepted (or corrected, when edited) by the reader; kept as training data; on to the next lesion."""
        lesion, row = self.parameters.lesion, self.currentRow()
        result = self.widget.logic.resultFor(lesion)
        if row is None or result is None:
            from LesaNetCore.errors import invalid

            raise invalid("lesion", "must be a worklist lesion with a result (wait for its annotation)",
                          lesion.GetName() if lesion is not None else None)
        self._verdict(row, "corrected" if result.edited else "accepted")

    def skip(self) -> None:
        row = self.currentRow()
        if row is not None:
            self._verdict(row, "skipped")

    def _verdict(self, row: int, status: str) -> None:
        session, logic, reader = self.session, self.widget.logic, self.parameters.reader
        lesion = session.lesionNode(row)
        folder = self.correctionsFolder()
        if logic.resultFor(lesion) is None:  # skipped before its annotation: an earlier verdict is withdrawn
            if folder is not None:
                from LesaNetCore.review.corrections import remove_correction

                remove_correction(folder, session.value(row, "lesion_id"))
        else:
            logic.setReview(lesion, status, reader)
            if folder is not None:
                logic.writeCorrection(lesion, folder, session.value(row, "lesion_id"), session.value(row, "patient_id"))
            self.widget.panel.setResult(logic.resultFor(lesion))
        session.setStatus(row, status, reader)
        following = session.nextRow(row, 1, unreviewedOnly=True)
        self.goto(following) if following is not None else self.refresh()

    def onTaskFinished(self, kind: str, task: Any) -> None:
        """After an annotation: the SR's labels and verdict for a lesion loaded from an SR."""
        lesion = self.parameters.lesion if self.parameters is not None else None
        preset = self.pending.pop(lesion.GetID(), None) if (kind == "annotate" and lesion is not None
                                                             and task.error is None) else None
        if preset is not None:
            logic = self.widget.logic
            result = preset.apply_to(logic.resultFor(lesion))
            logic.setAccepted(lesion, result.accepted)
            if result.review_status:
                logic.setReview(lesion, result.review_status, result.reader)
                row = self.session.rowOf(lesion)
                if row is not None:
                    self.session.setStatus(row, result.review_status, result.reader)
            self.widget.panel.setResult(logic.resultFor(lesion))
        self.refresh()

    def exportReview(self, folder: str | None = None) -> Path:
        """results.json, summary.csv and the agreement (table, and plot where matplotlib is there)."""
        from LesaNetCore.report import write_json_report
        from LesaNetCore.worklist import write_summary

        session = self.session
        results, ids = [], []
        for row in range(session.count):
            result = self.widget.logic.resultFor(session.lesionNode(row))
            if result is not None:
                results.append(result)
                ids.append(session.value(row, "lesion_id"))
        if not results:
            from LesaNetCore.errors import invalid

            raise invalid("review", "must have annotated lesions to export", "none yet")
        worklist = Path(self.parameters.worklistPath or "review")
        out = Path(folder) if folder else worklist.with_name(f"{worklist.stem}-review")
        out.mkdir(parents=True, exist_ok=True)
        write_json_report(results, out / "results.json", overwrite=True, include_images=False)
        write_summary(results, ids, out)
        self.lastExport = out
        self.widget.panel.statusLabel.setText(f"Review exported to {out}")
        return out

    def _jumpTo(self, lesion: Any) -> None:
        import slicer

        bounds = [0.0] * 6
        lesion.GetRASBounds(bounds)
        centre = [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2]
        markups = getattr(slicer.modules, "markups", None)
        if markups is not None and markups.logic() is not None:
            markups.logic().JumpSlicesToLocation(*centre, True)


def _applicationContext():
    from .qtcompat import QtCore

    return QtCore.Qt.ApplicationShortcut
