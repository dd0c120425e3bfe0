"""LesaNet for 3D Slicer: draw a box around a lesion, get its body part, type and attributes, export an SR.

Thin by design: the module, its widget and its self-test. The work lives in ``LesaNetSlicerLib`` (adapters,
logic, panel, worker, dependencies) and in ``LesaNetCore``. The file imports without Slicer's application (the
``slicer-core`` wheel, plain Python) so tests and scripts can reach ``LesaNetSlicerLogic``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # the module folder holds LesaNetSlicerLib
    sys.path.insert(0, str(_HERE))

from LesaNetSlicerLib import paths  # noqa: E402

paths.ensureCoreImportable()

from LesaNetSlicerLib.logic import AnnotationSettings, LesaNetSlicerLogic  # noqa: E402, F401

try:
    import slicer
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
    from slicer.util import VTKObservationMixin

    IN_SLICER = hasattr(slicer, "app")
except ImportError:  # slicer-core wheel or no Slicer: keep the names importable for scripts and tests
    IN_SLICER = False

    class ScriptedLoadableModule:  # type: ignore[no-redef]
        def __init__(self, parent) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:  # type: ignore[no-redef]
        def __init__(self, parent=None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleTest:  # type: ignore[no-redef]
        pass

    class VTKObservationMixin:  # type: ignore[no-redef]
        def __init__(self) -> None:
            pass


class LesaNetSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesaNet"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["LesaNet for 3D Slicer authors"]
        self.parent.helpText = (
            "Holistic lesion annotation on CT (LesaNet, Yan et al., CVPR 2019). Select a CT, click "
            "<b>Draw box</b> and drag a box around a lesion on a slice, then click <b>Annotate</b>: the panel "
            "lists the lesion's body part, type and attributes with score bars (red tick = decision threshold) "
            "and the most similar reference lesions. Tick or untick labels, add a missing one, and export a DICOM "
            "Structured Report (TID 1500), JSON or Markdown. Results are also kept in a table node in the scene. "
            "The demo model is trained on phantoms and is not for clinical use.")
        self.parent.acknowledgementText = (
            "LesaNet: K. Yan et al., Holistic and comprehensive annotation of clinically significant findings on "
            "diverse CT images: learning from radiology reports and label ontology, CVPR 2019. Ontology adapted "
            "from RadLex; reference method code by the NIH Clinical Center (rsummers11/CADLab).")


class LesaNetSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs from the .ui file, results from ``ResultsPanel``, work in the controller."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self.panel = None
        self._parameters = None

    def resourcePath(self, filename: str) -> str:
        """Resources next to the module (installed) or one level up (source checkout)."""
        return str(paths.resourcePath(filename))

    def setup(self) -> None:
        import qt
        from LesaNetSlicerLib import dependencies
        from LesaNetSlicerLib.controller import AnnotationController, defaultPathChooser
        from LesaNetSlicerLib.panel import ResultsPanel

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesaNetSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LesaNetSlicerLogic()
        self.panel = ResultsPanel()
        resultsLayout = self.ui.resultsFrame.layout() or qt.QVBoxLayout(self.ui.resultsFrame)
        resultsLayout.addWidget(self.panel.widget)

        def choosePath(suggested: Path, suffix: str):
            folder = self.ui.exportFolderPathLineEdit.currentPath
            return defaultPathChooser(Path(folder) / suggested.name if folder else suggested, suffix)

        self.controller = AnnotationController(self.logic, self.panel, pathChooser=choosePath)
        self.controller.finishedCallbacks.append(lambda result: self._updateButtons())

        self.ui.drawBoxButton.clicked.connect(self.onDrawBox)
        self.ui.annotateButton.clicked.connect(self.onAnnotate)
        for selector in (self.ui.inputVolumeSelector, self.ui.roiSelector):
            selector.currentNodeChanged.connect(lambda *_: self._updateButtons())
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        missing = dependencies.missingDependencies()
        self.ui.dependencyLabel.setText(dependencies.describeMissing(missing))
        self.ui.dependencyLabel.setVisible(bool(missing))
        self._initializeParameters()
        self._updateButtons()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.controller is not None:
            self.controller.cancel()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self._initializeParameters()

    # ---------------------------------------------------------------------------------------- parameters
    def _initializeParameters(self) -> None:
        from LesaNetSlicerLib.parameters import wrapParameterNode

        self._parameters = wrapParameterNode(self.logic.getParameterNode())
        if self._parameters.inputVolume is None:
            self._parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        p = self._parameters
        self.ui.inputVolumeSelector.setCurrentNode(p.inputVolume)
        self.ui.roiSelector.setCurrentNode(p.roi)
        self.ui.modelPathLineEdit.currentPath = p.modelPath
        self.ui.indexPathLineEdit.currentPath = p.indexPath
        self.ui.retrievalCheckBox.checked = p.retrieval
        self.ui.deviceComboBox.currentText = p.device
        self.ui.thresholdOffsetSliderWidget.value = p.thresholdOffset
        self.ui.topKSpinBox.value = p.topK

    def _updateParametersFromGui(self):
        p = self._parameters
        p.inputVolume = self.ui.inputVolumeSelector.currentNode()
        p.roi = self.ui.roiSelector.currentNode()
        p.modelPath = self.ui.modelPathLineEdit.currentPath
        p.indexPath = self.ui.indexPathLineEdit.currentPath
        p.retrieval = self.ui.retrievalCheckBox.checked
        p.device = self.ui.deviceComboBox.currentText
        p.thresholdOffset = self.ui.thresholdOffsetSliderWidget.value
        p.topK = self.ui.topKSpinBox.value
        return p

    def _updateButtons(self) -> None:
        ready = self.ui.inputVolumeSelector.currentNode() is not None and self.ui.roiSelector.currentNode() is not None
        self.ui.annotateButton.enabled = ready and not (self.controller and self.controller.busy)
        self.ui.annotateButton.toolTip = "Annotate the lesion in the box" if ready else \
            "Select a CT volume and draw a box first"

    # ------------------------------------------------------------------------------------------- actions
    def onDrawBox(self) -> None:
        """Creates an ROI and enters placement mode on the slice views (drag a box around the lesion)."""
        with slicer.util.tryWithErrorDisplay("Cannot start drawing a box.", waitCursor=True):
            roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Lesion")
            roi.CreateDefaultDisplayNodes()
            self.ui.roiSelector.setCurrentNode(roi)
            selectionNode = slicer.app.applicationLogic().GetSelectionNode()
            selectionNode.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsROINode")
            selectionNode.SetActivePlaceNodeID(roi.GetID())
            slicer.modules.markups.logic().StartPlaceMode(False)

    def onAnnotate(self) -> None:
        from LesaNetSlicerLib import dependencies
        from LesaNetSlicerLib.parameters import settings

        with slicer.util.tryWithErrorDisplay("Cannot install LesaNet's dependencies.", waitCursor=True):
            if not dependencies.ensureDependencies(ask=True):
                self.ui.dependencyLabel.setText(dependencies.describeMissing(dependencies.missingDependencies()))
                return
        self.ui.dependencyLabel.setVisible(False)
        p = self._updateParametersFromGui()
        self.controller.annotate(p.inputVolume, p.roi, settings(p))
        self._updateButtons()


class LesaNetSlicerTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: a phantom CT, an ROI on its lesion, annotate, check the scene, export."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_annotatePhantomLesion()

    def test_annotatePhantomLesion(self) -> None:
        import numpy as np
        from LesaNetSlicerLib import tables

        from LesaNetCore.annotate import demo_model_path
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
        folder = Path(tempfile.mkdtemp(prefix="lesanet-selftest-"))
        if demo_model_path().exists():
            logic.settings = AnnotationSettings(device="cpu")
        else:  # a fresh installation without the demo weights still checks the whole flow
            logging.warning("LesaNet self-test: demo model missing, using an untrained model")
            logic.settings = AnnotationSettings(modelPath=str(_untrainedCheckpoint(folder)), retrieval=False,
                                                device="cpu")
        self.delayDisplay("Annotating")
        result = logic.annotate(volumeNode, roi, timeout=300)
        rows = tables.readTable(logic.resultsTableNode(roi))
        self.assertEqual(len(rows), len(result.labels))
        self.assertEqual(roi.GetName(), result.top_finding())
        self.assertEqual(result.location.key_slice, lesions[0].box_ijk[4])
        for suffix in (".json", ".md", ".dcm"):
            written = logic.exportReport(result, folder / f"lesion{suffix}")
            self.assertTrue(written.is_file() and written.stat().st_size > 0)
        logic.worker.shutdown()
        self.delayDisplay("Test passed")


def _untrainedCheckpoint(folder: Path) -> Path:
    from LesaNetCore.model import create_model
    from LesaNetCore.ontology import load_default_ontology
    from LesaNetCore.training.checkpoint import save_checkpoint

    ontology = load_default_ontology()
    labels = [t.name for t in ontology][:12]
    return save_checkpoint(folder / "untrained.pt", create_model("lesanet_demo", num_labels=len(labels)),
                           arch="lesanet_demo", label_names=labels,
                           label_classes=[ontology.label_class(n) for n in labels])
