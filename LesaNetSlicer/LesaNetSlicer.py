"""LesaNet for 3D Slicer: box or measure a lesion, get its body part, type and attributes, export an SR.

Thin by design, after Slicer's scripted-module template: the module, its parameter node, its widget, its logic
and its self-test. The work lives in ``LesaNetSlicerLib`` (nodes -> core conventions, the worker process, the
results panel, dependencies) and in ``LesaNetCore``.

Supported: 3D Slicer 5.10 and later (Python 3.12). This file stays importable by older releases (Slicer 5.6
and 5.8 ship Python 3.9, which cannot import the core): there the module loads and its panel says what it
needs, and nothing else runs. Keep this file's syntax to Python 3.9 (a test parses it so).
"""

import logging
import os
import sys
import unittest
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MINIMUM_SLICER = (5, 10)
MINIMUM_PYTHON = (3, 10)


def unsupportedReason() -> Optional[str]:
    """Why this Slicer cannot run LesaNet (shown in the panel), or None."""
    app = getattr(slicer, "app", None)
    if app is not None and (int(app.majorVersion), int(app.minorVersion)) < MINIMUM_SLICER:
        return (f"LesaNet needs 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later; this is Slicer "
                f"{app.majorVersion}.{app.minorVersion} (Python {sys.version_info[0]}.{sys.version_info[1]}). "
                "Install a current Slicer from download.slicer.org.")
    if sys.version_info[:2] < MINIMUM_PYTHON:
        return (f"LesaNet needs Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]} or later; this Slicer has Python "
                f"{sys.version_info[0]}.{sys.version_info[1]}.")
    return None


UNSUPPORTED = unsupportedReason()

if UNSUPPORTED is None:
    _MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
    if _MODULE_DIR not in sys.path:  # the module folder holds LesaNetSlicerLib
        sys.path.insert(0, _MODULE_DIR)
    from LesaNetSlicerLib import paths

    paths.ensureCoreImportable()

    from LesaNetSlicerLib.logic import AnnotationSettings, LesaNetLogic
    from slicer import (
        vtkMRMLMarkupsLineNode,
        vtkMRMLMarkupsROINode,
        vtkMRMLScalarVolumeNode,
        vtkMRMLTableNode,
    )
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

    @parameterNodeWrapper
    class LesaNetSlicerParameterNode:
        """What the user chose, saved with the scene.

        inputVolume - the CT.
        lesion - a markups ROI around the lesion, or a markups line along its long axis (RECIST).
        shortAxis - optional with a long-axis line: the short axis.
        modelPath, indexPath - checkpoint and reference index; empty for the shipped demo model and index.
        retrieval, device, thresholdOffset, topK - see ``LesaNetSlicerLib.logic.AnnotationSettings``.
        reader - the reviewing reader's name (Family^Given), saved with each verdict.
        worklistPath, correctionsPath, reviewTable - the worklist under review, where corrections go, and the
            review's table node (``LesaNetSlicerLib.review``).
        """

        inputVolume: vtkMRMLScalarVolumeNode
        lesion: Optional[Union[vtkMRMLMarkupsROINode, vtkMRMLMarkupsLineNode]]
        shortAxis: vtkMRMLMarkupsLineNode
        modelPath: str = ""
        indexPath: str = ""
        retrieval: bool = True
        device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
        thresholdOffset: Annotated[float, WithinRange(-0.5, 0.5)] = 0.0
        topK: Annotated[int, WithinRange(0, 20)] = 5
        reader: str = ""
        worklistPath: str = ""
        correctionsPath: str = ""
        reviewTable: vtkMRMLTableNode

    _LogicBase = LesaNetLogic
else:
    _LogicBase = ScriptedLoadableModuleLogic


class LesaNetSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesaNet"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["LesaNet for 3D Slicer authors"]
        self.parent.helpText = (
            "Holistic lesion annotation on CT (LesaNet, Yan et al., CVPR 2019). Select a CT, then either click "
            "<b>Draw box</b> and click two opposite corners of the lesion on a slice view, or click <b>Measure</b> "
            "and click the two ends of its longest diameter (RECIST; optionally measure the short axis too). Click "
            "<b>Annotate</b>: the panel lists the lesion's body part, type and attributes with score bars (red "
            "tick = decision threshold) and the most similar reference lesions. Tick or untick labels, add a "
            "missing one, and export a DICOM Structured Report (TID 1500), JSON or Markdown. Results stay in the "
            "scene (a table beside the CT), follow the selected lesion and survive saving the scene. The model "
            "runs in a separate process; the demo model is trained on phantoms and is not for clinical use.")
        self.parent.acknowledgementText = (
            "LesaNet: K. Yan et al., Holistic and comprehensive annotation of clinically significant findings on "
            "diverse CT images: learning from radiology reports and label ontology, CVPR 2019. Ontology adapted "
            "from RadLex; reference method code by the NIH Clinical Center (rsummers11/CADLab).")


class LesaNetSlicerLogic(_LogicBase):
    """The module's logic (``LesaNetSlicerLib.logic.LesaNetLogic``) with its typed parameter node.

    Scripting::

        logic = LesaNetSlicerLogic()
        result = logic.annotate(volumeNode, roiOrLineNode)
        logic.exportReport(result, "/tmp/lesion.dcm")
    """

    def getParameterNode(self):
        return LesaNetSlicerParameterNode(ScriptedLoadableModuleLogic.getParameterNode(self))


def settingsFromParameters(parameters) -> "AnnotationSettings":
    """The logic's settings from the parameter node."""
    return AnnotationSettings(modelPath=parameters.modelPath, indexPath=parameters.indexPath,
                              retrieval=parameters.retrieval, device=parameters.device,
                              thresholdOffset=float(parameters.thresholdOffset), topK=int(parameters.topK))


class LesaNetSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs from the .ui file bound to the parameter node, results from ``ResultsPanel``."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._shownLesionID = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if UNSUPPORTED is not None:
            label = qt.QLabel(UNSUPPORTED)
            label.setWordWrap(True)
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            logging.warning(UNSUPPORTED)
            return
        from LesaNetSlicerLib.controller import AnnotationController, defaultPathChooser
        from LesaNetSlicerLib.panel import ResultsPanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesaNetSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LesaNetSlicerLogic()
        self.panel = ResultsPanel()
        self.ui.resultsFrame.layout().addWidget(self.panel.widget)

        def choosePath(suggested, suffix):
            folder = self.ui.exportFolderPathLineEdit.currentPath
            return defaultPathChooser(type(suggested)(folder) / suggested.name if folder else suggested, suffix)

        self.controller = AnnotationController(self.logic, self.panel, pathChooser=choosePath)
        self.controller.finishedCallbacks.append(lambda kind, task: self._checkCanApply())

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.ui.drawBoxButton.connect("clicked(bool)", self.onDrawBox)
        self.ui.measureButton.connect("clicked(bool)", self.onMeasure)
        self.ui.measureShortAxisButton.connect("clicked(bool)", self.onMeasureShortAxis)
        self.ui.annotateButton.connect("clicked(bool)", self.onAnnotate)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self._onPathEdited)
        self.ui.indexPathLineEdit.connect("currentPathChanged(QString)", self._onPathEdited)

        self.ui.worklistPathLineEdit.connect("currentPathChanged(QString)", self._onPathEdited)
        self.ui.correctionsPathLineEdit.connect("currentPathChanged(QString)", self._onPathEdited)

        self.initializeParameterNode()
        from LesaNetSlicerLib.reviewpanel import ReviewController

        self.review = ReviewController(self)
        self._updateDependencyLabel()

    def cleanup(self) -> None:
        """Module unload or reload: observers off, the running task cancelled, the worker process stopped."""
        self.removeObservers()
        if self.controller is not None:
            self.controller.cancel()
        if self.logic is not None:
            self.logic.shutdown()

    def enter(self) -> None:
        if UNSUPPORTED is None:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onReload(self) -> None:
        """Reloads ``LesaNetSlicerLib`` too, not only this file (Slicer's reload re-executes just this file)."""
        for name in [n for n in sys.modules if n == "LesaNetSlicerLib" or n.startswith("LesaNetSlicerLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    # ---------------------------------------------------------------------------------------- scene events
    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        if self.controller is not None:
            self.controller.cancel()
            self.panel.clear()
            self.logic.records.clear()
            self._shownLesionID = None

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node) -> None:
        """A CT loaded while the module is open becomes the input when none is chosen yet."""
        if (self._parameterNode is not None and self._parameterNode.inputVolume is None
                and node.GetClassName() == "vtkMRMLScalarVolumeNode"):
            self._parameterNode.inputVolume = node

    def onSceneEndImport(self, caller, event) -> None:
        """A scene was loaded: its parameter node and its stored results take over."""
        if self.logic is None:
            return
        self._shownLesionID = None
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------------------------ parameter node
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        for lineEdit, value in self._pathEdits():
            if lineEdit.currentPath != value:
                lineEdit.currentPath = value
        lesion = p.lesion
        lesionID = lesion.GetID() if lesion is not None else None
        if lesionID != self._shownLesionID:  # results follow the selected lesion
            self._shownLesionID = lesionID
            self.controller.showLesion(lesion)
            if getattr(self, "review", None) is not None:
                self.review.refresh()
        self._checkCanApply()

    def _pathEdits(self) -> list:
        """The path fields kept by hand (parameterNodeWrapper binds ctkPathLineEdit to pathlib paths only)."""
        p = self._parameterNode
        return [(self.ui.modelPathLineEdit, p.modelPath), (self.ui.indexPathLineEdit, p.indexPath),
                (self.ui.worklistPathLineEdit, p.worklistPath), (self.ui.correctionsPathLineEdit, p.correctionsPath)]

    def _onPathEdited(self, *args) -> None:
        if self._parameterNode:
            p = self._parameterNode
            p.modelPath = self.ui.modelPathLineEdit.currentPath
            p.indexPath = self.ui.indexPathLineEdit.currentPath
            p.worklistPath = self.ui.worklistPathLineEdit.currentPath
            p.correctionsPath = self.ui.correctionsPathLineEdit.currentPath

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        ready = bool(p and p.inputVolume and p.lesion)
        busy = self.controller is not None and self.controller.busy
        self.ui.annotateButton.enabled = ready and not busy
        self.ui.annotateButton.toolTip = ("Annotate the lesion (the model runs in a separate process)" if ready
                                          else "Select a CT and draw a box or measure a lesion first")
        isLine = bool(p and p.lesion and p.lesion.IsA("vtkMRMLMarkupsLineNode"))
        self.ui.shortAxisSelector.enabled = isLine
        self.ui.measureShortAxisButton.enabled = isLine

    def _updateDependencyLabel(self) -> None:
        from LesaNetSlicerLib import dependencies

        plan = dependencies.currentPlan()
        self.ui.dependencyLabel.text = "" if plan.empty else plan.describe() + "\nClick Annotate to install them."
        self.ui.dependencyLabel.visible = not plan.empty

    # -------------------------------------------------------------------------------------------- actions
    def _startPlacing(self, node) -> None:
        """Places ``node`` on a slice view with the mouse: the interaction node in Place mode for its class."""
        appLogic = slicer.app.applicationLogic()
        selectionNode = appLogic.GetSelectionNode()
        selectionNode.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selectionNode.SetActivePlaceNodeID(node.GetID())
        interactionNode = appLogic.GetInteractionNode()
        interactionNode.SetPlaceModePersistence(0)
        interactionNode.SetCurrentInteractionMode(interactionNode.Place)

    def _placeNew(self, className: str, name: str, parameter: str) -> None:
        """A new markups node as the ``parameter`` input, placed with the mouse (two clicks)."""
        with slicer.util.tryWithErrorDisplay(f"Cannot start placing the {name.lower()}.", waitCursor=True):
            node = slicer.mrmlScene.AddNewNodeByClass(className, slicer.mrmlScene.GenerateUniqueName(name))
            node.CreateDefaultDisplayNodes()
            if parameter == "lesion":
                self._parameterNode.shortAxis = None  # a new lesion starts without the old one's short axis
            setattr(self._parameterNode, parameter, node)
            self._startPlacing(node)

    def onDrawBox(self) -> None:
        """A box: click one corner of the lesion, then the opposite corner, on a slice view."""
        self._placeNew("vtkMRMLMarkupsROINode", "Lesion box", "lesion")

    def onMeasure(self) -> None:
        """A RECIST long axis: click the two ends of the lesion's longest diameter."""
        self._placeNew("vtkMRMLMarkupsLineNode", "Long axis", "lesion")

    def onMeasureShortAxis(self) -> None:
        """The short axis, on the same slice as the long axis."""
        self._placeNew("vtkMRMLMarkupsLineNode", "Short axis", "shortAxis")

    def onAnnotate(self) -> None:
        """Installs what is missing (after asking), then annotates in the worker; the panel shows progress."""
        from LesaNetSlicerLib import dependencies

        with slicer.util.tryWithErrorDisplay("Cannot annotate.", waitCursor=True):
            plan = dependencies.currentPlan()
            if plan.empty:
                self._annotateNow()
                return
            if not slicer.util.confirmOkCancelDisplay(plan.describe() + "\n\nInstall them now? This can take "
                                                      "several minutes.", "LesaNet"):
                self._updateDependencyLabel()
                return
            self.controller.install(dependencies.InstallTask(plan), then=self._afterInstall)

    def _afterInstall(self) -> None:
        self._updateDependencyLabel()
        self._annotateNow()

    def _annotateNow(self) -> None:
        p = self._parameterNode
        isLine = p.lesion is not None and p.lesion.IsA("vtkMRMLMarkupsLineNode")
        self.controller.annotate(p.inputVolume, p.lesion, settingsFromParameters(p),
                                 shortAxisNode=p.shortAxis if isLine else None)
        self._checkCanApply()


class LesaNetSlicerTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: a phantom CT, an ROI and a RECIST line on its lesion, annotate, the scene, exports."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_annotatePhantomLesion()

    def test_annotatePhantomLesion(self) -> None:
        import importlib.util
        import tempfile
        from pathlib import Path

        if UNSUPPORTED is not None:
            raise unittest.SkipTest(UNSUPPORTED)
        if importlib.util.find_spec("torch") is None:
            raise unittest.SkipTest("LesaNet self-test skipped: torch is not installed in this Slicer (install the "
                                    "PyTorch extension, or click Annotate once to install it)")
        import numpy as np
        from LesaNetSlicerLib import tables

        from LesaNetCore.imaging import Volume
        from LesaNetCore.phantom import make_phantom_volume

        self.delayDisplay("Making a phantom CT")
        voxels, spacing, origin, direction, lesions = make_phantom_volume(seed=1, n_lesions=1, size=128,
                                                                          interval=2.5)
        volume = Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3))
        volumeNode = slicer.util.addVolumeFromArray(voxels, ijkToRAS=volume.ijk_to_ras_matrix(),
                                                    name="LesaNetPhantom")
        x1, y1, x2, y2, z = lesions[0].box_lps
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Lesion")
        roi.SetCenter(-(x1 + x2) / 2, -(y1 + y2) / 2, z)  # LPS -> RAS
        roi.SetSize(abs(x2 - x1), abs(y2 - y1), spacing[2])

        logic = LesaNetSlicerLogic()
        logic.settings = AnnotationSettings(device="cpu")
        folder = Path(tempfile.mkdtemp(prefix="lesanet-selftest-"))
        try:
            self.delayDisplay("Annotating in the worker process")
            result = logic.annotate(volumeNode, roi, timeout=600)
            rows = tables.readTable(logic.resultsTableNode(roi))
            self.assertEqual(len(rows), len(result.labels))
            self.assertEqual(roi.GetName(), result.top_finding())
            self.assertEqual(result.location.key_slice, lesions[0].box_ijk[4])

            self.delayDisplay("Annotating a RECIST long axis")
            line = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "Long axis")
            line.AddControlPoint(-x1 - 5, -(y1 + y2) / 2, z)
            line.AddControlPoint(-x2 + 5, -(y1 + y2) / 2, z)
            measured = logic.annotate(volumeNode, line, timeout=600)
            self.assertEqual(measured.location.box_from, "recist")

            for suffix in (".json", ".md", ".dcm"):
                written = logic.exportReport(result, folder / f"lesion{suffix}", timeout=600)
                self.assertTrue(written.is_file() and written.stat().st_size > 0)
        finally:
            logic.shutdown()
        self.delayDisplay("Test passed")
