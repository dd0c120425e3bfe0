"""The results panel: label rows with score bars and threshold ticks, a similar-lesion gallery, Export.

Written once against ``qtcompat`` (PythonQt inside Slicer, PySide6 outside). The panel is a plain Python object
that owns ``widget`` rather than a QWidget subclass, and it reports user actions through plain callback lists
(``acceptedChanged``, ``exportRequested``) rather than custom Qt signals, because PythonQt cannot declare new
signals from Python. Score bars are pixmaps painted with QPainter (no virtual ``paintEvent`` override needed).

Rows: every label the model accepted, scored near its threshold (score >= half the threshold) or the user
added; "Show all labels" lists all of them. Within each class (body part, type, attribute) rows are sorted by
score. Ticking or unticking a row edits the accepted set; the model's own decision stays visible in the tooltip
and as a bold term.
"""

from __future__ import annotations

from collections.abc import Callable

from LesaNetCore.imaging.patch import display_window
from LesaNetCore.result import LABEL_CLASSES, AnnotationResult, LabelScore, SimilarLesion

from .qtcompat import QtCore, QtGui, QtWidgets, pixmapFromGrey

CLASS_TITLES = {"bodypart": "Body part", "type": "Type", "attribute": "Attributes"}
BAR_WIDTH, BAR_HEIGHT = 150, 12
THUMBNAIL_SIZE = 96
FULL_SIZE = 360
_POSITIVE, _NEGATIVE, _BACKGROUND, _TICK = "#2e8b57", "#9a9a9a", "#e4e4e4", "#d62728"
EXPORT_SUFFIXES = ((".dcm", "Export SR"), (".json", "Export JSON"), (".md", "Export Markdown"))


def scoreBarPixmap(score: float, threshold: float, decision: bool, width: int = BAR_WIDTH,
                   height: int = BAR_HEIGHT):
    """A bar filled to ``score`` (green when the model says yes) with a red tick at ``threshold``."""
    pixmap = QtGui.QPixmap(width, height)
    pixmap.fill(QtGui.QColor(_BACKGROUND))
    painter = QtGui.QPainter(pixmap)
    filled = int(round(max(0.0, min(1.0, score)) * width))
    painter.fillRect(0, 0, filled, height, QtGui.QColor(_POSITIVE if decision else _NEGATIVE))
    tick = int(round(max(0.0, min(1.0, threshold)) * (width - 2)))
    painter.fillRect(tick, 0, 2, height, QtGui.QColor(_TICK))
    painter.end()
    return pixmap


class ResultsPanel:
    """The panel; see the module docstring. ``widget`` is what a layout receives."""

    def __init__(self, parent=None) -> None:
        self.widget = QtWidgets.QWidget(parent)
        self.acceptedChanged: list[Callable[[frozenset[str]], None]] = []
        self.exportRequested: list[Callable[[str], None]] = []
        self._result: AnnotationResult | None = None
        self._accepted: frozenset[str] = frozenset()
        self._checkBoxes: dict[str, object] = {}
        self._updating = False
        self._inputDescription = ""
        self.similarDialogs: list = []
        layout = QtWidgets.QVBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)

        status = QtWidgets.QHBoxLayout()
        self.statusLabel = QtWidgets.QLabel("Draw a box or measure a lesion, then click Annotate.")
        self.statusLabel.setWordWrap(True)
        self.progressBar = QtWidgets.QProgressBar()
        self.progressBar.setRange(0, 0)
        self.progressBar.setMaximumWidth(120)
        self.progressBar.setVisible(False)
        self.cancelButton = QtWidgets.QPushButton("Cancel")
        self.cancelButton.setVisible(False)
        status.addWidget(self.statusLabel, 1)
        status.addWidget(self.progressBar)
        status.addWidget(self.cancelButton)
        layout.addLayout(status)

        self.headerLabel = QtWidgets.QLabel("")
        self.headerLabel.setWordWrap(True)
        layout.addWidget(self.headerLabel)
        self.showAllCheckBox = QtWidgets.QCheckBox("Show all labels")
        self.showAllCheckBox.toggled.connect(lambda _checked: self._rebuildRows())
        layout.addWidget(self.showAllCheckBox)

        self.rowsContainer = QtWidgets.QWidget()
        self.rowsLayout = QtWidgets.QVBoxLayout(self.rowsContainer)
        self.rowsLayout.setContentsMargins(0, 0, 0, 0)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.rowsContainer)
        scroll.setMinimumHeight(220)
        layout.addWidget(scroll, 1)

        add = QtWidgets.QHBoxLayout()
        self.addComboBox = QtWidgets.QComboBox()
        self.addComboBox.setToolTip("A label the model missed: pick it and click Add.")
        self.addButton = QtWidgets.QPushButton("Add label")
        self.addButton.clicked.connect(lambda *_: self.addLabel(_property(self.addComboBox, "currentText")))
        add.addWidget(self.addComboBox, 1)
        add.addWidget(self.addButton)
        layout.addLayout(add)

        similarBox = QtWidgets.QGroupBox("Similar reference lesions")
        similarLayout = QtWidgets.QVBoxLayout(similarBox)
        self.galleryContainer = QtWidgets.QWidget()
        self.galleryLayout = QtWidgets.QHBoxLayout(self.galleryContainer)
        self.galleryLayout.setContentsMargins(0, 0, 0, 0)
        gallery = QtWidgets.QScrollArea()
        gallery.setWidgetResizable(True)
        gallery.setWidget(self.galleryContainer)
        gallery.setMinimumHeight(THUMBNAIL_SIZE + 90)
        similarLayout.addWidget(gallery)
        layout.addWidget(similarBox)

        exports = QtWidgets.QHBoxLayout()
        self.exportButtons = {}
        for suffix, text in EXPORT_SUFFIXES:
            button = QtWidgets.QPushButton(text)
            button.clicked.connect(lambda *_, s=suffix: self._emit(self.exportRequested, s))
            exports.addWidget(button)
            self.exportButtons[suffix] = button
        layout.addLayout(exports)
        self._setResultControlsEnabled(False)

    # ------------------------------------------------------------------------------------------- state
    @property
    def result(self) -> AnnotationResult | None:
        """The result as the model gave it (None before the first annotation)."""
        return self._result

    def accepted(self) -> frozenset[str]:
        return self._accepted

    def editedResult(self) -> AnnotationResult | None:
        """The result with the panel's edits applied (what an export writes)."""
        if self._result is None:
            return None
        return self._result.with_accepted(self._accepted)

    def rowTerms(self) -> list[str]:
        """The terms shown as rows, top to bottom."""
        return list(self._checkBoxes)

    def checkBox(self, term: str):
        return self._checkBoxes[term]

    # ------------------------------------------------------------------------------------------ updates
    def setBusy(self, busy: bool, message: str = "") -> None:
        """Shows progress and Cancel while the model runs; the rest of the panel stays usable."""
        self.progressBar.setVisible(busy)
        self.cancelButton.setVisible(busy)
        self.cancelButton.setEnabled(busy)
        if message:
            self.statusLabel.setText(message)

    def setResult(self, result: AnnotationResult) -> None:
        """Shows a new result (rows, gallery, header) and resets the edits to the result's accepted set."""
        self._result = result
        self._accepted = frozenset(result.accepted)
        self._updateHeader()
        self.showAllCheckBox.setText(f"Show all {len(result.labels)} labels")
        self.statusLabel.setText("Tick or untick labels to edit them; add a missing one below.")
        self._rebuildRows()
        self._rebuildGallery()
        self._setResultControlsEnabled(True)

    def clear(self, message: str = "Draw a box or measure a lesion, then click Annotate.") -> None:
        """No result to show (another lesion selected, a scene closed)."""
        self._result = None
        self._accepted = frozenset()
        self._inputDescription = ""
        self.headerLabel.setText("")
        self.statusLabel.setText(message)
        self._rebuildRows()
        _clearLayout(self.galleryLayout)
        self._refreshAddChoices()
        self._setResultControlsEnabled(False)

    def setInputDescription(self, text: str) -> None:
        """Which input is being annotated ("box 'Lesion'", "RECIST long axis 'Long axis'")."""
        self._inputDescription = text

    def _updateHeader(self) -> None:
        result = self.editedResult()
        if result is None:
            self.headerLabel.setText("")
            return
        timing = result.timings_ms.get("total")
        parts = [f"<b>{result.top_finding()}</b>" + (" (edited)" if result.edited else ""),
                 f"from {result.location.input_description()}"]
        if timing is not None:
            parts.append(f"{timing:.0f} ms")
        if result.model:
            parts.append(result.model)
        self.headerLabel.setText(" &middot; ".join(parts))

    def addLabel(self, term: str) -> None:
        """Accepts a label the model did not (from the combo box or a script)."""
        if self._result is None or not term:
            return
        self._result.label(term)  # raises LesaNetError naming an unknown term
        if term in self._accepted:
            return
        self._accepted = self._accepted | {term}
        self._rebuildRows()
        self._updateHeader()
        self._emit(self.acceptedChanged, self._accepted)

    # -------------------------------------------------------------------------------------------- build
    def _visible(self, label: LabelScore) -> bool:
        return (self.showAllCheckBox.isChecked() or label.term in self._accepted or label.decision
                or label.score >= 0.5 * label.threshold)

    def _rebuildRows(self) -> None:
        _clearLayout(self.rowsLayout)
        self._checkBoxes = {}
        if self._result is None:
            return
        self._updating = True
        for labelClass, labels in self._result.by_class().items():
            shown = [x for x in labels if self._visible(x)]
            if not shown:
                continue
            box = QtWidgets.QGroupBox(CLASS_TITLES.get(labelClass, labelClass))
            grid = QtWidgets.QGridLayout(box)
            for row, label in enumerate(shown):
                self._addRow(grid, row, label)
            self.rowsLayout.addWidget(box)
        self.rowsLayout.addStretch(1)
        self._updating = False
        self._refreshAddChoices()

    def _addRow(self, grid, row: int, label: LabelScore) -> None:
        checkBox = QtWidgets.QCheckBox(label.term)
        checkBox.setChecked(label.term in self._accepted)
        font = _property(checkBox, "font")
        font.setBold(label.decision)
        checkBox.setFont(font)
        edited = (label.term in self._accepted) != label.decision
        tip = (f"{label.term} ({label.label_class}): score {label.score:.3f}, threshold {label.threshold:.2f}; "
               f"model says {'yes' if label.decision else 'no'}{'; edited by you' if edited else ''}"
               f"{'; RadLex ' + label.radlex if label.radlex else ''}")
        checkBox.setToolTip(tip)
        checkBox.toggled.connect(lambda checked, term=label.term: self._onToggled(term, checked))
        bar = QtWidgets.QLabel()
        bar.setPixmap(scoreBarPixmap(label.score, label.threshold, label.decision))
        bar.setToolTip(tip)
        value = QtWidgets.QLabel(f"{label.score:.2f}" + (" *" if edited else ""))
        grid.addWidget(checkBox, row, 0)
        grid.addWidget(bar, row, 1)
        grid.addWidget(value, row, 2)
        self._checkBoxes[label.term] = checkBox

    def _refreshAddChoices(self) -> None:
        self.addComboBox.clear()
        if self._result is None:
            return
        order = {c: i for i, c in enumerate(LABEL_CLASSES)}
        missing = sorted((x for x in self._result.labels if x.term not in self._accepted),
                         key=lambda x: (order.get(x.label_class, 9), x.term))
        for label in missing:
            self.addComboBox.addItem(label.term)
        self.addButton.setEnabled(bool(missing))

    def _rebuildGallery(self) -> None:
        _clearLayout(self.galleryLayout)
        similar = self._result.similar if self._result is not None else ()
        if not similar:
            self.galleryLayout.addWidget(QtWidgets.QLabel("No reference index: no similar lesions to show."))
            return
        for lesion in similar:
            card = QtWidgets.QFrame()
            card.setFrameShape(QtWidgets.QFrame.StyledPanel)
            cardLayout = QtWidgets.QVBoxLayout(card)
            thumb = QtWidgets.QLabel()
            if lesion.thumbnail is not None:
                pixmap = pixmapFromGrey(display_window(lesion.thumbnail))
                thumb.setPixmap(pixmap.scaled(THUMBNAIL_SIZE, THUMBNAIL_SIZE, QtCore.Qt.KeepAspectRatio,
                                              QtCore.Qt.SmoothTransformation))
            else:
                thumb.setText("(no image)")
            thumb.setAlignment(QtCore.Qt.AlignCenter)
            cardLayout.addWidget(thumb)
            # The core lists the most specific labels first; their ancestors are implied.
            shown = ", ".join(lesion.labels[:4]) + (", …" if len(lesion.labels) > 4 else "")
            for text in (shown, lesion.sentence,
                         f"distance {lesion.distance:.3f} · lesion {lesion.lesion_id}"):
                if text:
                    label = QtWidgets.QLabel(text)
                    label.setWordWrap(True)
                    label.setMaximumWidth(THUMBNAIL_SIZE + 60)
                    cardLayout.addWidget(label)
            view = QtWidgets.QPushButton("View")
            view.setToolTip("Open this reference lesion at full size beside this lesion's patch")
            view.clicked.connect(lambda *_, item=lesion: self.openSimilar(item))
            cardLayout.addWidget(view)
            card.setToolTip(f"patient {lesion.patient_id}")
            self.galleryLayout.addWidget(card)
        self.galleryLayout.addStretch(1)

    def openSimilar(self, lesion: SimilarLesion):
        """A window with the reference lesion at full size beside this lesion's patch, for comparison."""
        dialog = QtWidgets.QDialog(self.widget)
        dialog.setWindowTitle(f"Similar lesion {lesion.lesion_id} (distance {lesion.distance:.3f})")
        layout = QtWidgets.QGridLayout(dialog)
        images = [("This lesion", _patchWithBox(self._result.patch_image, self._result.patch_box)
                   if self._result is not None and self._result.patch_image is not None else None),
                  (f"Reference lesion {lesion.lesion_id} (patient {lesion.patient_id})",
                   display_window(lesion.thumbnail) if lesion.thumbnail is not None else None)]
        for column, (title, image) in enumerate(images):
            layout.addWidget(QtWidgets.QLabel(f"<b>{title}</b>"), 0, column)
            picture = QtWidgets.QLabel()
            if image is not None:
                picture.setPixmap(pixmapFromGrey(image).scaled(FULL_SIZE, FULL_SIZE, QtCore.Qt.KeepAspectRatio,
                                                               QtCore.Qt.SmoothTransformation))
            else:
                picture.setText("(no image)")
            layout.addWidget(picture, 1, column)
        mine = ", ".join(self._result.most_specific(x.term for x in self._result.accepted_labels())) \
            if self._result is not None else ""
        for column, text in enumerate((f"Labels: {mine}", f"Labels: {', '.join(lesion.labels)}")):
            label = QtWidgets.QLabel(text)
            label.setWordWrap(True)
            layout.addWidget(label, 2, column)
        sentence = QtWidgets.QLabel(f"Report: {lesion.sentence}" if lesion.sentence else "")
        sentence.setWordWrap(True)
        layout.addWidget(sentence, 3, 1)
        dialog.show()
        self.similarDialogs.append(dialog)
        return dialog

    # ------------------------------------------------------------------------------------------- events
    def _onToggled(self, term: str, checked: bool) -> None:
        if self._updating:
            return
        self._accepted = (self._accepted | {term}) if checked else (self._accepted - {term})
        self._refreshAddChoices()
        self._updateHeader()
        self._emit(self.acceptedChanged, self._accepted)

    def _emit(self, callbacks: list[Callable], value) -> None:
        for callback in list(callbacks):
            callback(value)

    def _setResultControlsEnabled(self, enabled: bool) -> None:
        for button in self.exportButtons.values():
            button.setEnabled(enabled)
        self.addComboBox.setEnabled(enabled)
        self.addButton.setEnabled(enabled)
        self.showAllCheckBox.setEnabled(enabled)


def _patchWithBox(patch, box):
    """The patch's middle channel in a soft-tissue window, with the lesion box drawn white."""
    import numpy as np

    image = display_window(np.asarray(patch)[1]).copy()
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        h, w = image.shape
        x1, x2, y1, y2 = max(0, x1), min(w - 1, x2), max(0, y1), min(h - 1, y2)
        image[y1, x1:x2 + 1] = image[y2, x1:x2 + 1] = 255
        image[y1:y2 + 1, x1] = image[y1:y2 + 1, x2] = 255
    return image


def _property(widget, name: str):
    """A Qt property's value: PySide6 exposes getters as methods, PythonQt as attributes."""
    value = getattr(widget, name)
    return value() if callable(value) else value


def _clearLayout(layout) -> None:
    """Removes and deletes every item of a layout (widgets are deleted later by Qt, safely)."""
    while layout.count():
        item = layout.takeAt(0)
        widget = item.widget()
        if widget is not None:
            widget.setParent(None)
            widget.deleteLater()
