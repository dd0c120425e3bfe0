"""The results panel and its wiring (controller, tasks, worker process, logic) under PySide6 offscreen (pytest-qt).

The same panel runs in Slicer under PythonQt: ``test_slicer_widget.py`` drives it there, on Slicer's real Python
layer. Here it runs under Qt.py, the way the README's screenshot is made.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_PREFERRED_BINDING", "PySide6")
os.environ.setdefault("PYTEST_QT_API", "pyside6")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import slicer_bootstrap as sb  # noqa: E402

_REASON = sb.slicerCoreAvailable()
pytest.importorskip("PySide6", reason="PySide6 is needed for the offscreen panel tests")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))

SCREENSHOT = sb.REPO_ROOT / "Resources" / "Screenshots" / "panel.png"


appFixture, checkpointFixture, logicFixture = sb.sharedFixtures()


def _scene_input(app, name):
    rng = np.random.default_rng(7)
    voxels = (rng.normal(40, 30, (12, 64, 64)) + 0).astype(np.float32)
    voxels[:, 20:40, 24:44] += 120  # a bright "lesion"
    ijk_to_ras = np.diag([-0.9, -0.9, 2.5, 1.0])
    ijk_to_ras[:3, 3] = [28.0, 28.0, -10.0]
    volume = sb.addVolume(app.scene, voxels, ijk_to_ras, name)
    roi = sb.addRoi(app.scene, (28 - 0.9 * 34, 28 - 0.9 * 30, -10 + 2.5 * 6), (22, 22, 2.5), f"{name} box")
    return volume, roi


def _controller(logic, qtbot, tmp_path, errors):
    from LesaNetSlicerLib.controller import AnnotationController
    from LesaNetSlicerLib.panel import ResultsPanel

    panel = ResultsPanel()
    qtbot.addWidget(panel.widget)
    counter = iter(range(100))
    controller = AnnotationController(
        logic, panel, errorHandler=lambda message, details: errors.append((message, details)),
        pathChooser=lambda suggested, suffix: str(tmp_path / f"export{next(counter)}{suffix}"), pollMs=10)
    return panel, controller


def _save_screenshot(panel, tmp_path: Path) -> Path:
    panel.widget.resize(560, 820)
    panel.widget.show()
    image = panel.widget.grab()
    out = tmp_path / "panel.png"
    assert image.save(str(out)) and out.stat().st_size > 1000
    if os.environ.get("LESANET_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert image.save(str(SCREENSHOT))
    return out


def _finish(qtbot, controller, timeout=60000):
    qtbot.waitUntil(lambda: not controller.busy, timeout=timeout)


def test_annotate_fills_rows_and_edits_reach_export(app, logic, qtbot, tmp_path):
    from LesaNetSlicerLib import tables

    from LesaNetCore.report import read_json_report

    errors: list = []
    panel, controller = _controller(logic, qtbot, tmp_path, errors)
    volume, roi = _scene_input(app, "panelCT")
    task = controller.annotate(volume, roi)
    assert task is not None and not panel.progressBar.isHidden() and not panel.cancelButton.isHidden()
    _finish(qtbot, controller)
    assert not errors and panel.progressBar.isHidden() and panel.result is not None
    result = panel.result

    shown = panel.rowTerms()
    assert set(result.accepted) <= set(shown)
    panel.showAllCheckBox.setChecked(True)
    assert sorted(panel.rowTerms()) == sorted(x.term for x in result.labels)
    # Rows follow the class order, highest score first within a class.
    assert panel.rowTerms() == [x.term for group in result.by_class().values() for x in group]

    dropped = next(iter(sorted(result.accepted)), None) or result.labels[0].term
    if dropped not in result.accepted:
        panel.addLabel(dropped)
    panel.checkBox(dropped).setChecked(False)
    table = {r["term"]: r for r in tables.readTable(logic.resultsTableNode(roi))}
    assert table[dropped]["accepted"] == 0.0
    panel.exportButtons[".json"].click()
    _finish(qtbot, controller)
    first = controller.lastExport
    assert first is not None and first.suffix == ".json" and not errors
    assert dropped not in read_json_report(first)[0].accepted

    missing = panel.addComboBox.itemText(0)
    assert missing and missing not in panel.accepted()
    panel.addComboBox.setCurrentIndex(0)
    panel.addButton.click()
    assert missing in panel.accepted() and panel.checkBox(missing).isChecked()
    panel.exportButtons[".md"].click()
    _finish(qtbot, controller)
    panel.exportButtons[".json"].click()
    _finish(qtbot, controller)
    second = read_json_report(controller.lastExport)[0]
    assert missing in second.accepted and missing in second.added and dropped not in second.accepted
    table = {r["term"]: r for r in tables.readTable(logic.resultsTableNode(roi))}
    assert table[missing]["accepted"] == 1.0 and table[missing]["decision"] == 0.0
    assert len(list(tmp_path.glob("export*.md"))) == 1


def test_errors_go_to_the_handler_with_details(app, logic, qtbot, tmp_path):
    from LesaNetSlicerLib.logic import AnnotationSettings

    errors: list = []
    panel, controller = _controller(logic, qtbot, tmp_path, errors)
    volume, _ = _scene_input(app, "errCT")
    far = sb.addRoi(app.scene, (900, 900, 900), (5, 5, 1), "far")
    assert controller.annotate(volume, far) is None
    assert "must overlap the volume" in errors[-1][0] and "Traceback" in errors[-1][1]

    _, roi = _scene_input(app, "errCT2")
    bad = AnnotationSettings(modelPath=str(tmp_path / "missing.pt"), retrieval=False, device="cpu")
    controller.annotate(volume, roi, settings=bad)
    _finish(qtbot, controller)
    assert len(errors) == 2 and "must be an existing checkpoint file" in errors[-1][0]
    # The worker's own traceback comes back as the details.
    assert "LesaNetError" in errors[-1][1] and "workerserver" in errors[-1][1] and panel.result is None


def test_cancel_frees_the_panel_and_the_next_annotation_works(app, logic, qtbot, tmp_path):
    errors: list = []
    panel, controller = _controller(logic, qtbot, tmp_path, errors)
    volume, roi = _scene_input(app, "cancelCT")
    task = controller.annotate(volume, roi)
    panel.cancelButton.click()
    assert task.done and task.cancelled and task.result is None
    assert not controller.busy and panel.cancelButton.isHidden() and panel.result is None and not errors
    controller.annotate(volume, roi)
    _finish(qtbot, controller)
    assert not errors and panel.result is not None


def test_score_bar_marks_score_and_threshold(qtbot):
    from LesaNetSlicerLib import panel as panel_module

    image = panel_module.scoreBarPixmap(0.25, 0.75, True, width=100, height=10).toImage()
    colour = lambda x: image.pixelColor(x, 5).name()  # noqa: E731
    assert colour(10) == panel_module._POSITIVE
    assert colour(60) == panel_module._BACKGROUND
    assert colour(round(0.75 * 98)) == panel_module._TICK


def test_gallery_shows_similar_lesions(app, logic, qtbot):
    from LesaNetSlicerLib.panel import ResultsPanel

    from LesaNetCore.result import SimilarLesion

    volume, roi = _scene_input(app, "galleryCT")
    result = logic.annotate(volume, roi)
    thumb = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    similar = tuple(SimilarLesion(str(n), f"p{n}", 0.1 * n, ("liver", "mass"), "A liver mass.", thumb)
                    for n in range(3))
    panel = ResultsPanel()
    qtbot.addWidget(panel.widget)
    panel.setResult(replace(result, similar=similar))
    cards = [panel.galleryLayout.itemAt(n).widget() for n in range(panel.galleryLayout.count())]
    cards = [c for c in cards if c is not None]
    assert len(cards) == 3
    from LesaNetSlicerLib.qtcompat import QtWidgets

    pixmaps = [lab.pixmap() for lab in cards[0].findChildren(QtWidgets.QLabel) if lab.pixmap() is not None
               and not lab.pixmap().isNull()]
    assert pixmaps and pixmaps[0].width() == 96


def test_panel_screenshot(app, logic, qtbot, tmp_path):
    """Writes the panel's picture (always into tmp; into Resources/ with LESANET_UPDATE_SCREENSHOTS=1).

    Uses the shipped demo model and index on a phantom lesion when they are installed, else the untrained test
    model with the patch itself standing in for the reference thumbnails.
    """
    from LesaNetSlicerLib.logic import AnnotationSettings
    from LesaNetSlicerLib.panel import ResultsPanel

    from LesaNetCore.annotate import demo_index_path, demo_model_path
    from LesaNetCore.imaging import Volume
    from LesaNetCore.phantom import make_phantom_volume
    from LesaNetCore.result import SimilarLesion

    voxels, spacing, origin, direction, lesions = make_phantom_volume(seed=2, n_lesions=1, size=128, interval=5.0)
    volume = Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3))
    node = sb.addVolume(app.scene, voxels, volume.ijk_to_ras_matrix(), "phantom")
    x1, y1, x2, y2, z = lesions[0].box_lps
    roi = sb.addRoi(app.scene, (-(x1 + x2) / 2, -(y1 + y2) / 2, z), (abs(x2 - x1), abs(y2 - y1), spacing[2]))
    demo = demo_model_path().exists() and demo_index_path().exists()
    settings = AnnotationSettings(device="cpu") if demo else None
    result = logic.annotate(node, roi, settings, timeout=300)
    if not result.similar:
        thumb = np.clip(result.patch_image[1], 0, 255).astype(np.uint8)
        names = [x.term for x in result.accepted_labels()] or [result.labels[0].term]
        result = replace(result, similar=tuple(
            SimilarLesion(f"ref{n}", f"patient{n}", 0.2 + 0.1 * n, tuple(names), "Example reference sentence.",
                          np.roll(thumb, 7 * n, axis=1)) for n in range(3)))
    panel = ResultsPanel()
    qtbot.addWidget(panel.widget)
    panel.setResult(result)
    assert _save_screenshot(panel, tmp_path).is_file()
