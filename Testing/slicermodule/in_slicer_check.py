"""LesaNet's main workflow, checked inside a real 3D Slicer (5.10 or later).

Run it with the Slicer you use (after adding the repository's ``LesaNetSlicer`` folder to the module paths, or
with the extension installed)::

    Slicer --no-main-window --python-script Testing/slicermodule/in_slicer_check.py
    Slicer --no-main-window --python-script Testing/slicermodule/in_slicer_check.py --additional-module-paths LesaNetSlicer

It prints one line per step, ``PASS`` or ``FAIL`` with what it saw, then a summary, and exits with 0 when every
step passed. The steps are those a radiologist takes: open the module, load a CT, draw a box, annotate (the model
in its worker process while the main loop keeps turning: the longest main-thread stall is printed), measure a
RECIST line, edit a label, export JSON and a DICOM SR, save and reopen the scene, cancel, survive a worker crash,
close the scene, reload the module. Packages the worker needs must be installed first (click Annotate once in the
module, or pass ``--install`` to let this script install them after the usual question).

The project's test suite runs this same script on Slicer's real Python layer outside Slicer
(``test_in_slicer_check.py``); what only a real Slicer can show is listed in the README.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import qt
import slicer


class Checks:
    """Runs the steps in order; a failed step is reported and the next ones still run where they can."""

    def __init__(self, echo=print, timeout: float = 600.0) -> None:
        self.echo = echo
        self.timeout = timeout
        self.results: list[tuple[str, bool, str]] = []
        self.folder = Path(tempfile.mkdtemp(prefix="lesanet-in-slicer-"))
        self.widget = None

    def step(self, name: str, function) -> bool:
        try:
            detail = function() or ""
            ok = True
        except Exception as err:  # noqa: BLE001 - every failure is one line of the report
            detail = f"{type(err).__name__}: {err}"
            if os.environ.get("LESANET_CHECK_TRACEBACK"):
                detail += "\n" + traceback.format_exc()
            ok = False
        self.results.append((name, ok, detail))
        self.echo(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))
        return ok

    # --------------------------------------------------------------------------------------------- helpers
    def runUntilDone(self) -> float:
        """Turns the event loop until the module's task ends; the longest gap between 5 ms ticks, in seconds."""
        ticks: list[float] = []
        timer = qt.QTimer()
        timer.setInterval(5)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        deadline = time.perf_counter() + self.timeout
        while self.widget.controller.busy:
            slicer.app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the task did not finish in {self.timeout} s: {self.widget.controller.task.status}")
        timer.stop()
        slicer.app.processEvents()
        return max((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=0.0)

    def annotate(self) -> float:
        self.errors.clear()
        if not self.widget.ui.annotateButton.enabled:
            raise RuntimeError(f"Annotate is disabled: {self.widget.ui.annotateButton.toolTip}")
        self.widget.ui.annotateButton.click()
        stall = self.runUntilDone()
        if self.errors:
            raise RuntimeError(self.errors[-1][0])
        return stall

    # ------------------------------------------------------------------------------------------------ steps
    def run(self, install: bool = False) -> bool:
        self.step("the module is loaded", self.moduleLoaded)
        if not self.step("the module panel sets up (parameter node bound to the GUI)", self.openModule):
            return False
        self.step("the worker's Python packages are installed", lambda: self.packages(install))
        self.step("a phantom CT becomes the input", self.loadCt)
        self.step("Draw box starts ROI placement", self.drawBox)
        self.step("Annotate runs in the worker while the main loop turns", self.annotateBox)
        self.step("a warm annotation", self.annotateWarm)
        self.step("a RECIST long axis is a lesion input", self.measure)
        self.step("an edit reaches the table node", self.edit)
        self.step("JSON and DICOM SR export", self.export)
        self.step("the saved scene reopens with its result, editable and exportable", self.reopen)
        self.step("Cancel stops an annotation", self.cancel)
        self.step("a crashed worker is reported and restarted", self.crash)
        self.step("closing the scene resets the module", self.closeScene)
        self.step("Reload reloads LesaNetSlicerLib and stops the old worker", self.reload)
        failed = [name for name, ok, _ in self.results if not ok]
        self.echo(f"{len(self.results) - len(failed)} of {len(self.results)} steps passed"
                  + (f"; failed: {', '.join(failed)}" if failed else ""))
        return not failed

    def moduleLoaded(self) -> str:
        module = slicer.modules.lesanetslicer
        return f"Slicer {slicer.app.majorVersion}.{slicer.app.minorVersion}, module at {module.path}"

    def openModule(self) -> str:
        self.widget = slicer.util.getModuleWidget("LesaNetSlicer")
        # Entering the module (what selecting it does; --no-main-window has no module selector).
        slicer.modules.lesanetslicer.widgetRepresentation().enter()
        if self.widget.controller is None:
            raise RuntimeError("the panel shows: " + " ".join(w.text for w in
                                                              slicer.util.findChildren(self.widget.parent,
                                                                                       className="QLabel")))
        self.errors: list = []
        self.widget.controller.errorHandler = lambda message, details: self.errors.append((message, details))
        counter = iter(range(1000))
        self.widget.controller.pathChooser = lambda suggested, suffix: str(self.folder / f"export{next(counter)}"
                                                                                           f"{suffix}")
        if self.widget._parameterNodeGuiTag is None:
            raise RuntimeError("the parameter node is not connected to the GUI")
        return type(self.widget._parameterNode).__name__

    def packages(self, install: bool) -> str:
        from LesaNetSlicerLib import dependencies

        plan = dependencies.currentPlan()
        if plan.empty:
            return "all present"
        if not install:
            raise RuntimeError(plan.describe().replace("\n", " ") + " (run with --install, or click Annotate once)")
        self.widget.controller.install(dependencies.InstallTask(plan))
        self.runUntilDone()
        if not dependencies.currentPlan().empty:
            raise RuntimeError("still missing: " + dependencies.currentPlan().describe().replace("\n", " "))
        return "installed"

    def loadCt(self) -> str:
        from LesaNetCore.demo import demo_volume

        volume, self.lesions = demo_volume(seed=3)
        self.volume = volume
        self.ct = slicer.util.addVolumeFromArray(volume.voxels.astype(np.int16), ijkToRAS=volume.ijk_to_ras_matrix(),
                                                 name="LesaNetCheckCT")
        if self.widget._parameterNode.inputVolume is not self.ct:
            self.widget._parameterNode.inputVolume = self.ct
        if self.widget.ui.inputVolumeSelector.currentNode() is not self.ct:
            raise RuntimeError("the CT selector does not show the CT")
        self.widget._parameterNode.device = "cpu"
        return f"{volume.size_ijk} voxels"

    def drawBox(self) -> str:
        self.widget.ui.drawBoxButton.click()
        roi = self.widget._parameterNode.lesion
        selection = slicer.app.applicationLogic().GetSelectionNode()
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        placing = (selection.GetActivePlaceNodeClassName(), selection.GetActivePlaceNodeID(),
                   interaction.GetCurrentInteractionMode())
        if placing != ("vtkMRMLMarkupsROINode", roi.GetID(), interaction.Place):
            raise RuntimeError(f"placement is {placing}")
        interaction.SetCurrentInteractionMode(interaction.ViewTransform)
        # What the two clicks do: the box around the first lesion on its key slice.
        x1, y1, x2, y2, z = self.lesions[0].box_lps
        roi.SetCenter(-(x1 + x2) / 2, -(y1 + y2) / 2, z)
        roi.SetSize(abs(x2 - x1), abs(y2 - y1), self.volume.spacing[2])
        self.roi = roi
        return "ROI class, Place mode"

    def annotateBox(self) -> str:
        started = time.perf_counter()
        stall = self.annotate()
        result = self.widget.logic.resultFor(self.roi)
        if result is None or self.widget.panel.result is not result or self.roi.GetName() != result.top_finding():
            raise RuntimeError("no result in the panel, or the ROI was not renamed")
        return (f"{result.top_finding()}; first answer {time.perf_counter() - started:.1f} s; longest main-thread "
                f"stall {stall * 1000:.0f} ms")

    def annotateWarm(self) -> str:
        started = time.perf_counter()
        stall = self.annotate()
        return f"answer {(time.perf_counter() - started) * 1000:.0f} ms, longest stall {stall * 1000:.0f} ms"

    def measure(self) -> str:
        self.widget.ui.measureButton.click()
        line = self.widget._parameterNode.lesion
        i1, j1, i2, j2, k = self.lesions[1].box_ijk
        ends = self.volume.ijk_to_lps(np.array([[i1 + 5, (j1 + j2) / 2, k], [i2 - 5, (j1 + j2) / 2, k]]))
        for point in ends * [-1, -1, 1]:
            line.AddControlPointWorld(*[float(v) for v in point])
        slicer.app.applicationLogic().GetInteractionNode().SetCurrentInteractionMode(
            slicer.app.applicationLogic().GetInteractionNode().ViewTransform)
        self.annotate()
        result = self.widget.logic.resultFor(line)
        if result.location.box_from != "recist":
            raise RuntimeError(f"the box came from {result.location.box_from}")
        self.line = line
        return result.location.input_description()

    def edit(self) -> str:
        from LesaNetSlicerLib import tables

        result = self.widget.logic.resultFor(self.line)
        added = next(x.term for x in result.labels if x.term not in result.accepted)
        self.widget.panel.addLabel(added)
        rows = {r["term"]: r for r in tables.readTable(self.widget.logic.resultsTableNode(self.line))}
        if rows[added]["accepted"] != 1.0:
            raise RuntimeError(f"{added!r} is not accepted in the table")
        self.added = added
        return f"added {added!r}"

    def export(self) -> str:
        written = []
        for suffix in (".json", ".dcm"):
            self.errors.clear()
            self.widget.panel.exportButtons[suffix].click()
            self.runUntilDone()
            if self.errors:
                raise RuntimeError(self.errors[-1][0])
            written.append(self.widget.controller.lastExport)
        from LesaNetCore.report import read_dicom_sr

        (group,) = read_dicom_sr(written[1])
        if self.added not in group["labels"]:
            raise RuntimeError(f"the SR lacks the added label {self.added!r}")
        return ", ".join(f"{p.name} ({p.stat().st_size} bytes)" for p in written)

    def reopen(self) -> str:
        scene = slicer.mrmlScene
        lineID = self.line.GetID()
        before = self.widget.logic.resultFor(self.line)
        path = self.folder / "scene.mrb"
        if hasattr(slicer.app, "ioManager"):  # a real Slicer: its own scene writer and reader
            if not slicer.util.saveScene(str(path)):
                raise RuntimeError(f"could not save {path}")
            slicer.mrmlScene.Clear(0)
            slicer.util.loadScene(str(path))
        else:  # Slicer's Python layer without the application: the MRML storage nodes do the same
            path = self.folder / "scene.mrml"
            for index in range(scene.GetNumberOfNodes()):
                node = scene.GetNthNode(index)
                if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is None and node.AddDefaultStorageNode():
                    storage = node.GetStorageNode()
                    storage.SetFileName(str(self.folder / f"{node.GetID()}.{storage.GetDefaultWriteFileExtension()}"))
                if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
                    node.GetStorageNode().WriteData(node)
            scene.SetRootDirectory(str(self.folder))
            scene.SetURL(str(path))
            scene.Commit()
            scene.Clear(0)
            scene.SetURL(str(path))
            scene.Import()
        line = slicer.mrmlScene.GetNodeByID(lineID) or slicer.mrmlScene.GetFirstNodeByName(self.line.GetName())
        self.widget.ui.lesionSelector.setCurrentNode(line)
        shown = self.widget.panel.result
        if shown is None or shown.accepted != before.accepted:
            raise RuntimeError(f"the reopened lesion {line and line.GetName()!r} has no result or another one "
                               f"({shown and sorted(shown.accepted)} instead of {sorted(before.accepted)})")
        self.line = line
        self.export()
        return f"{path.name}: {shown.top_finding()}"

    def cancel(self) -> str:
        self.widget.ui.annotateButton.click()
        self.widget.panel.cancelButton.click()
        if self.widget.controller.busy or self.widget.panel.statusLabel.text != "Cancelled.":
            raise RuntimeError(f"status {self.widget.panel.statusLabel.text!r}")
        self.annotate()
        return "cancelled, then annotated again"

    def crash(self) -> str:
        worker = self.widget.logic.worker
        if os.name == "nt" or not worker.alive:
            worker.kill()
            return "killed (Windows: no SIGSTOP)"
        os.kill(worker.pid, signal.SIGSTOP)
        self.widget.ui.annotateButton.click()
        deadline = time.perf_counter() + 30
        while not any(r.status == "running" for r in worker._pending.values()) and time.perf_counter() < deadline:
            slicer.app.processEvents()
            time.sleep(0.001)
        os.kill(worker.pid, signal.SIGKILL)
        self.runUntilDone()
        if not self.errors or "stopped" not in self.errors[-1][0]:
            raise RuntimeError(f"no crash report: {self.errors}")
        report = self.errors[-1][0]
        self.annotate()
        return f"reported ({report[:70]}...), then annotated in a new worker"

    def closeScene(self) -> str:
        slicer.mrmlScene.Clear(0)
        if self.widget.panel.result is not None or self.widget._parameterNode is None:
            raise RuntimeError("the panel still shows a result, or the parameter node is gone")
        return "panel cleared"

    def reload(self) -> str:
        import LesaNetSlicerLib.logic as before

        worker = self.widget.logic.worker
        self.widget.onReload()
        import LesaNetSlicerLib.logic as after

        if after is before or worker.alive:
            raise RuntimeError("the library was not reloaded, or the old worker still runs")
        self.widget = slicer.modules.LesaNetSlicerWidget
        return "reloaded"


def main() -> None:
    checks = Checks()
    ok = checks.run(install="--install" in sys.argv)
    widget = checks.widget
    if widget is not None and widget.logic is not None:
        widget.logic.shutdown()
    slicer.util.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
