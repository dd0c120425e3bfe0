"""The module as a user drives it, on Slicer's real Python layer (5.10.0 and 5.12.3) over slicer-core's MRML.

Each Slicer release gets one module panel (``widgetRepresentation()``, as opening the module does) and the
tests click its buttons, place markups the way the markups widgets would, turn the event loop while the worker
process annotates (and measure the longest main-thread stall), cancel, crash the worker, edit, export, save
and reopen the scene, close it, and reload the module. See ``slicerlayer`` for what is real and what is stood in.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import slicerlayer  # noqa: E402

MODULE_FILE = slicerlayer.REPO_ROOT / "LesaNetSlicer" / "LesaNetSlicer.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=slicerlayer.VERSIONS)
def layer(request):
    reason = slicerlayer.unavailable(request.param)
    if reason:
        pytest.skip(reason)
    pytest.importorskip("torch")
    loaded = slicerlayer.SlicerLayer.load(request.param)
    loaded.loadModule(MODULE_FILE)
    yield loaded
    loaded.unload()


@pytest.fixture(scope="module")
def widget(layer, tmp_path_factory):
    w = layer.widget("LesaNetSlicer")
    w.errors = []
    w.controller.errorHandler = lambda message, details: w.errors.append((message, details))
    exports = tmp_path_factory.mktemp("exports")
    counter = iter(range(1000))
    w.controller.pathChooser = lambda suggested, suffix: str(exports / f"export{next(counter)}{suffix}")
    return w


@pytest.fixture(scope="module")
def ct(layer):
    """The demo's phantom CT as a volume node, and its lesions."""
    from LesaNetCore.demo import demo_volume

    volume, lesions = demo_volume(seed=3)
    node = layer.slicer.util.addVolumeFromArray(volume.voxels.astype(np.int16), ijkToRAS=volume.ijk_to_ras_matrix(),
                                                name="PhantomCT")
    return node, volume, lesions


def placeRoi(layer, roi, volume, lesion) -> None:
    """What the ROI widget does after the two clicks: centre and size in RAS on the key slice."""
    x1, y1, x2, y2, z = lesion.box_lps
    roi.SetCenter(-(x1 + x2) / 2, -(y1 + y2) / 2, z)
    roi.SetSize(abs(x2 - x1), abs(y2 - y1), volume.spacing[2])


def placeLine(line, pointsRas) -> None:
    """What the line widget does after the two clicks."""
    for point in pointsRas:
        line.AddControlPointWorld(*[float(v) for v in point])


def clickAnnotate(widget) -> None:
    assert widget.ui.annotateButton.enabled, widget.ui.annotateButton.toolTip
    widget.ui.annotateButton.click()
    assert widget.controller.busy


def runUntilDone(layer, widget, timeout: float = 300.0) -> float:
    """Turns the event loop until the controller's task ends; returns the longest gap between 5 ms timer ticks."""
    import qt

    ticks: list[float] = []
    timer = qt.QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    deadline = time.perf_counter() + timeout
    while widget.controller.busy:
        layer.processEvents(0.001)
        assert time.perf_counter() < deadline, "the task did not finish in time"
    layer.processEvents(0.02)
    timer.stop()
    return float(np.max(np.diff(ticks))) if len(ticks) > 1 else 0.0


def test_setup_binds_the_parameter_node_to_the_gui(layer, widget, ct):
    node, _, _ = ct
    p = widget._parameterNode
    assert type(p).__name__ == "LesaNetSlicerParameterNode" and widget._parameterNodeGuiTag is not None
    assert p.inputVolume is node and widget.ui.inputVolumeSelector.currentNode() is node
    widget.ui.topKSpinBox.value = 3
    assert p.topK == 3
    p.device = "cpu"
    assert widget.ui.deviceComboBox.currentText == "cpu"
    widget.ui.modelPathLineEdit.currentPath = "/models/none.pt"
    assert p.modelPath == "/models/none.pt"
    p.modelPath = ""
    assert widget.ui.modelPathLineEdit.currentPath == ""
    assert not widget.ui.annotateButton.enabled  # no lesion yet
    # The template's layout: the icon and the .ui next to the module, found by Slicer's own code.
    assert Path(widget.resourcePath("UI/LesaNetSlicer.ui")).is_file()
    assert layer.slicer.modules.lesanetslicer.icon is not None


def test_draw_box_enters_roi_placement(layer, widget):
    widget.ui.drawBoxButton.click()
    selection = layer.appLogic.GetSelectionNode()
    interaction = layer.appLogic.GetInteractionNode()
    roi = widget._parameterNode.lesion
    assert roi is not None and roi.IsA("vtkMRMLMarkupsROINode")
    assert selection.GetActivePlaceNodeClassName() == "vtkMRMLMarkupsROINode"
    assert selection.GetActivePlaceNodeID() == roi.GetID()
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    assert widget.ui.lesionSelector.currentNode() is roi
    interaction.SetCurrentInteractionMode(interaction.ViewTransform)


def test_annotate_in_the_worker_keeps_the_main_loop_turning(layer, widget, ct, capsys):
    node, volume, lesions = ct
    roi = widget._parameterNode.lesion
    placeRoi(layer, roi, volume, lesions[0])
    widget._parameterNode.device = "cpu"
    assert widget.ui.annotateButton.enabled
    clickAnnotate(widget)
    assert widget.controller.busy and not widget.panel.cancelButton.isHidden()
    stall = runUntilDone(layer, widget)
    assert not widget.errors, widget.errors
    result = widget.logic.resultFor(roi)
    assert result is not None and result.location.key_slice == lesions[0].box_ijk[4]
    assert roi.GetName() == result.top_finding()
    assert widget.panel.result is result and set(widget.panel.rowTerms()) >= set(result.accepted)
    assert f"from {result.location.input_description()}" in widget.panel.headerLabel.text
    info = widget.logic.worker.info
    first = result.timings_ms
    # A second box on the warm worker: model loaded, volume already there.
    clickAnnotate(widget)
    warmStart = time.perf_counter()
    warmStall = runUntilDone(layer, widget)
    warmSeconds = time.perf_counter() - warmStart
    with capsys.disabled():
        print(f"\n[Slicer {layer.version}] worker connected after {info['startSeconds']:.2f} s; longest "
              f"main-thread stall: first annotation {stall * 1000:.1f} ms, warm {warmStall * 1000:.1f} ms; warm "
              f"answer {warmSeconds * 1000:.0f} ms (model {first.get('total', 0):.0f} ms)")
    assert stall < 1.0 and warmStall < 1.0  # generous: the number above is what the target reads


def test_table_sits_under_the_study_and_results_follow_the_selection(layer, widget, ct):
    node, volume, lesions = ct
    slicer = layer.slicer
    roi = widget._parameterNode.lesion
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Anonymous")
    study = sh.CreateStudyItem(patient, "CT study")
    volumeItem = sh.GetItemByDataNode(node) or sh.CreateItem(study, node)
    sh.SetItemParent(volumeItem, study)
    clickAnnotate(widget)
    runUntilDone(layer, widget)
    table = widget.logic.resultsTableNode(roi)
    assert sh.GetItemParent(sh.GetItemByDataNode(table)) == study

    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Second lesion")
    widget.ui.lesionSelector.setCurrentNode(other)
    assert widget.panel.result is None and "not annotated yet" in widget.panel.statusLabel.text
    widget.ui.lesionSelector.setCurrentNode(roi)
    assert widget.panel.result is not None and widget.panel.result.top_finding() == roi.GetName()
    slicer.mrmlScene.RemoveNode(other)


def test_a_recist_line_is_a_lesion_input(layer, widget, ct):
    node, volume, lesions = ct
    widget.ui.measureButton.click()
    line = widget._parameterNode.lesion
    assert line.IsA("vtkMRMLMarkupsLineNode")
    assert layer.appLogic.GetSelectionNode().GetActivePlaceNodeClassName() == "vtkMRMLMarkupsLineNode"
    assert widget.ui.measureShortAxisButton.enabled
    i1, j1, i2, j2, k = lesions[1].box_ijk
    long_ijk = np.array([[i1 + 5, (j1 + j2) / 2, k], [i2 - 5, (j1 + j2) / 2, k]])
    short_ijk = np.array([[(i1 + i2) / 2, j1 + 6, k], [(i1 + i2) / 2, j2 - 6, k]])
    placeLine(line, volume.ijk_to_lps(long_ijk) * [-1, -1, 1])
    widget.ui.measureShortAxisButton.click()
    short = widget._parameterNode.shortAxis
    placeLine(short, volume.ijk_to_lps(short_ijk) * [-1, -1, 1])
    clickAnnotate(widget)
    runUntilDone(layer, widget)
    assert not widget.errors, widget.errors
    result = widget.logic.resultFor(line)
    assert result.location.box_from == "recist" and len(result.location.recist_ij) == 4
    expected = (long_ijk[0, 0] - 5, short_ijk[0, 1] - 5, long_ijk[1, 0] + 5, short_ijk[1, 1] + 5)
    np.testing.assert_allclose(result.location.box_ijk, expected, atol=1e-6)
    assert "RECIST long and short axis" in widget.panel.headerLabel.text


def test_edits_reach_the_table_and_the_exports(layer, widget, ct, tmp_path):
    from LesaNetSlicerLib import tables

    from LesaNetCore.report import read_dicom_sr, read_json_report

    line = widget._parameterNode.lesion
    result = widget.logic.resultFor(line)
    added = next(x.term for x in result.labels if x.term not in result.accepted and x.label_class == "attribute")
    widget.panel.addLabel(added)
    table = {r["term"]: r for r in tables.readTable(widget.logic.resultsTableNode(line))}
    assert table[added]["accepted"] == 1.0 and table[added]["decision"] == 0.0
    for button in (".json", ".dcm"):
        widget.panel.exportButtons[button].click()
        runUntilDone(layer, widget)
        assert not widget.errors, widget.errors
        written = widget.controller.lastExport
        assert written.suffix == button and written.is_file()
        if button == ".json":
            assert added in read_json_report(written)[0].accepted
        else:
            (group,) = read_dicom_sr(written)
            assert added in group["labels"] and group["edited"]


def test_saved_scene_reopens_with_editable_exportable_results(layer, widget, ct, tmp_path):
    from LesaNetSlicerLib import tables

    slicer = layer.slicer
    scene = slicer.mrmlScene
    lesion = widget._parameterNode.lesion
    before = widget.logic.resultFor(lesion)
    # Save as Slicer does: every storable node writes its file, then the scene writes its .mrml.
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is None and node.GetID():
            if node.AddDefaultStorageNode() and node.GetStorageNode() is not None:
                storage = node.GetStorageNode()
                storage.SetFileName(str(tmp_path / f"{node.GetID()}.{storage.GetDefaultWriteFileExtension()}"))
        if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
            assert node.GetStorageNode().WriteData(node), node.GetName()
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    lesionID = lesion.GetID()
    scene.Clear(0)
    assert widget.panel.result is None and widget._parameterNode is not None  # closed, then a fresh node
    assert widget.logic.records == {}
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Import()
    reopened = scene.GetNodeByID(lesionID)
    # The scene's own parameter node selects the lesion again, and its result comes from the table node.
    assert reopened is not None and widget.ui.lesionSelector.currentNode() is reopened
    shown = widget.panel.result
    assert shown is not None and shown.accepted == before.accepted and shown.location == before.location
    assert len(tables.readTable(widget.logic.resultsTableNode(reopened))) == len(before.labels)
    dropped = sorted(shown.accepted)[-1]
    widget.panel.checkBox(dropped).setChecked(False)
    assert dropped not in widget.logic.resultFor(reopened).accepted
    widget.panel.exportButtons[".dcm"].click()
    runUntilDone(layer, widget)
    assert not widget.errors, widget.errors
    assert widget.controller.lastExport.is_file()


def test_cancel_stops_the_request(layer, widget):
    clickAnnotate(widget)
    assert widget.controller.busy
    widget.panel.cancelButton.click()
    assert not widget.controller.busy and widget.panel.statusLabel.text == "Cancelled."
    layer.processEvents(0.05)
    # The module still works afterwards (the worker answered the cancel or was restarted).
    clickAnnotate(widget)
    runUntilDone(layer, widget)
    assert not widget.errors, widget.errors


def test_a_crashed_worker_is_reported_and_restarted(layer, widget):
    worker = widget.logic.worker
    assert worker.alive
    os.kill(worker.pid, signal.SIGSTOP)  # frozen: it cannot answer before it dies
    clickAnnotate(widget)
    for _ in range(2000):  # until a request has been sent to it
        layer.processEvents(0.001)
        if any(r.status == "running" for r in worker._pending.values()):
            break
    os.kill(worker.pid, signal.SIGKILL)
    runUntilDone(layer, widget)
    assert widget.errors and "stopped" in widget.errors[-1][0], widget.errors
    widget.errors.clear()
    generation = worker.generation
    clickAnnotate(widget)
    runUntilDone(layer, widget)
    assert not widget.errors, widget.errors
    assert worker.generation == generation + 1 and worker.alive


def test_scene_close_resets_the_panel_and_parameters(layer, widget):
    slicer = layer.slicer
    assert widget._parameterNode.lesion is not None
    slicer.mrmlScene.Clear(0)
    # The singleton parameter node is reset by the close and observed again.
    assert widget.panel.result is None and widget.logic.records == {}
    assert widget._parameterNode is not None and widget._parameterNode.lesion is None
    assert widget._parameterNodeGuiTag is not None


def test_reload_reloads_the_library_and_stops_the_old_worker(layer, widget):
    import LesaNetSlicerLib.logic as oldLogic

    worker = widget.logic.worker
    assert worker.alive
    widget.onReload()
    import LesaNetSlicerLib.logic as newLogic

    assert newLogic is not oldLogic
    assert not worker.alive  # cleanup() stopped it
    fresh = layer.slicer.modules.LesaNetSlicerWidget
    assert fresh is not widget and fresh.logic is not widget.logic and fresh._parameterNode is not None


def test_missing_packages_install_from_the_panel_then_annotate(layer, ct, tmp_path, monkeypatch):
    """Annotate with a package missing: the question, pip's progress in the panel, a new worker, the result."""
    import importlib.util

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the test wheel offline")
    import slicer_bootstrap as sb
    from LesaNetSlicerLib import dependencies
    from packaging.requirements import Requirement

    widget = layer.widget("LesaNetSlicer")  # the panel made by the reload above
    widget.errors = []
    widget.controller.errorHandler = lambda message, details: widget.errors.append((message, details))
    node, volume, lesions = ct
    if layer.slicer.mrmlScene.GetNodeByID(node.GetID()) is None:  # the scene was closed: load the CT again
        node = layer.slicer.util.addVolumeFromArray(volume.voxels.astype(np.int16),
                                                    ijkToRAS=volume.ijk_to_ras_matrix(), name="PhantomCT")
    widget._parameterNode.inputVolume = node
    widget._parameterNode.device = "cpu"
    widget.ui.drawBoxButton.click()
    placeRoi(layer, widget._parameterNode.lesion, volume, lesions[2])

    wheels = sb.tinyWheel(tmp_path, "lesanetprobe", "3.1", [])
    target = tmp_path / "private"
    monkeypatch.setenv(dependencies.PACKAGES_ENV, str(target))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))

    def currentPlan(requirements=None):  # "lesanetprobe>=3" must sit in the worker's folder
        installed = dependencies.installedVersions([str(target)]) if target.is_dir() else {}
        return dependencies.InstallPlan() if "lesanetprobe" in installed else dependencies.InstallPlan(
            private=[Requirement("lesanetprobe>=3")], notes=["lesanetprobe>=3 (found nothing)"])

    monkeypatch.setattr(dependencies, "currentPlan", currentPlan)
    generation = widget.logic.worker.generation
    statuses = set()
    questions = []
    # The user's OK. (Slicer's own testing-mode answer is False: it compares True with QMessageBox.Ok.)
    monkeypatch.setattr(layer.slicer.util, "confirmOkCancelDisplay",
                        lambda text, *args, **kwargs: questions.append(text) or True)
    clickAnnotate(widget)
    while widget.controller.busy:
        statuses.add(widget.panel.statusLabel.text.split(":")[0])
        layer.processEvents(0.005)
    assert not widget.errors, widget.errors
    assert questions and "lesanetprobe>=3 (found nothing)" in questions[0]
    assert "Installing lesanetprobe>=3 for the worker" in statuses
    assert dependencies.installedVersions([str(target)]) == {"lesanetprobe": "3.1"}
    assert widget.logic.worker.generation > generation  # a new worker, started with the folder on its path
    assert widget.logic.resultFor(widget._parameterNode.lesion) is not None
    assert widget.logic.worker.pythonPath[0] == str(target)


def test_torch_goes_through_the_real_pytorch_extension(layer, monkeypatch):
    """``installTorch`` against SlicerPyTorch's own PyTorchUtils (light-the-torch stood in: no network)."""
    import sys
    import types

    from LesaNetSlicerLib import dependencies
    from packaging.requirements import Requirement

    source = slicerlayer.SHARED_SLICER / "SlicerPyTorch" / "PyTorchUtils" / "PyTorchUtils.py"
    if not source.is_file():
        pytest.skip(f"SlicerPyTorch's PyTorchUtils is not present at {source}")
    calls = []
    monkeypatch.setitem(sys.modules, "light_the_torch", types.ModuleType("light_the_torch"))
    monkeypatch.setitem(sys.modules, "light_the_torch._patch", types.ModuleType("light_the_torch._patch"))
    monkeypatch.setattr(layer.slicer.util, "_executePythonModule", lambda module, args: calls.append((module, args)),
                        raising=False)
    monkeypatch.syspath_prepend(str(source.parent))
    monkeypatch.delitem(sys.modules, "PyTorchUtils", raising=False)
    dependencies.installTorch(Requirement("torch>=2.1,<3"))
    assert calls == [("light_the_torch", ["install", "torch<3,>=2.1", "torchvision"])]


def test_the_modules_own_self_test_passes_and_skips_without_torch(layer, monkeypatch):
    """What Reload and Test and the extensions build farm run (slicer.selfTests), on this Slicer's layer."""
    import importlib.util
    import unittest

    layer.slicer.selfTests["LesaNetSlicer"](msec=10)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(unittest.SkipTest, match="torch is not installed"):
        layer.slicer.selfTests["LesaNetSlicer"](msec=10)
