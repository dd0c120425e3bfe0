"""A minimal Slicer application for tests on the ``slicer-core`` wheel (MRML, logics and slicer.util; no Qt).

``slicer-core`` gives the MRML classes and ``slicer.util`` but no ``slicer.app``, no ``slicer.mrmlScene`` and no
module logics. What the LesaNet layer needs, and why:

* an application logic on the scene (selection and interaction singletons, the logics registry);
* the colour logic with its default colour nodes (volume and markups display nodes look up default colours);
* the markups logic registered as "Markups" (ROI display nodes and placement use it);
* the segmentations logic, which registers the segmentation converter rules on construction (segmentation
  nodes cannot create representations without them);
* ``slicer.mrmlScene`` set, because ``slicer.util`` helpers (``addVolumeFromArray``, ``getNode``) read it.

Also adds the repository's ``LesaNetSlicer`` folder to ``sys.path`` so ``LesaNetSlicerLib`` imports as Slicer
would import it, and makes ``LesaNetCore`` importable from the checkout.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "LesaNetSlicer"

for _path in (MODULE_DIR, REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def slicerCoreAvailable() -> str | None:
    """None when the 3D Slicer ``slicer-core`` wheel is importable, else why not (for pytest.skip)."""
    if importlib.util.find_spec("slicer") is None:
        return "the slicer-core wheel is not installed (pip install slicer-core)"
    if importlib.util.find_spec("slicer_core") is None:
        return "the 'slicer' package found is not 3D Slicer's slicer-core (an unrelated PyPI 'slicer' package?)"
    return None


_APP: SimpleNamespace | None = None


def bootstrap() -> SimpleNamespace:
    """Creates (once) a scene with the application, colour, markups and segmentation logics."""
    global _APP
    if _APP is not None:
        return _APP
    import slicer
    import vtk

    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    appLogic.GetColorLogic().SetMRMLScene(scene)
    appLogic.GetColorLogic().AddDefaultColorNodes()
    appLogic.SetSliceLogics(vtk.vtkCollection())
    appLogic.SetViewLogics(vtk.vtkCollection())
    colorLogic = slicer.vtkMRMLColorLogic()
    colorLogic.SetMRMLApplicationLogic(appLogic)
    colorLogic.SetMRMLScene(scene)
    appLogic.SetModuleLogic("Colors", colorLogic)
    markupsLogic = slicer.vtkSlicerMarkupsLogic()
    markupsLogic.SetMRMLApplicationLogic(appLogic)
    markupsLogic.SetMRMLScene(scene)
    appLogic.SetModuleLogic("Markups", markupsLogic)
    segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentationsLogic.SetMRMLApplicationLogic(appLogic)
    segmentationsLogic.SetMRMLScene(scene)
    appLogic.SetModuleLogic("Segmentations", segmentationsLogic)
    slicer.mrmlScene = scene
    _APP = SimpleNamespace(scene=scene, appLogic=appLogic, colorLogic=colorLogic, markupsLogic=markupsLogic,
                           segmentationsLogic=segmentationsLogic)
    return _APP


def addVolume(scene, voxels: np.ndarray, ijkToRas: np.ndarray, name: str = "CT"):
    """A scalar volume node from a (K, J, I) array and a 4x4 IJK-to-RAS matrix (as Slicer's loaders make)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    voxels = np.ascontiguousarray(voxels)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.ravel(), deep=True))
    node.SetAndObserveImageData(image)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijkToRas[r, c]))
    node.SetIJKToRASMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    assert slicer.util.arrayFromVolume(node).shape == voxels.shape
    return node


def addRoi(scene, centerRas, sizeRas, name: str = "ROI", objectToNode: np.ndarray | None = None):
    """An ROI node with centre and size in its parent (node) coordinates, optionally rotated."""
    import vtk

    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    roi.SetSize(*[float(v) for v in sizeRas])
    if objectToNode is not None:
        matrix = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, float(objectToNode[r, c]))
        roi.GetObjectToNodeMatrix().DeepCopy(matrix)
    roi.SetCenter(*[float(v) for v in centerRas])
    return roi


def addLinearTransform(scene, matrixToParent: np.ndarray, name: str = "T"):
    import vtk

    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(matrixToParent[r, c]))
    node.SetMatrixTransformToParent(matrix)
    return node


def tinyCheckpoint(path: Path, nLabels: int = 12) -> Path:
    """An untrained ``lesanet_demo`` checkpoint over the first labels of each class of the default ontology."""
    from LesaNetCore.model import create_model
    from LesaNetCore.ontology import load_default_ontology
    from LesaNetCore.training.checkpoint import save_checkpoint

    ontology = load_default_ontology()
    byClass: dict[str, list[str]] = {}
    for term in ontology:
        byClass.setdefault(term.label_class, []).append(term.name)
    per = max(1, nLabels // 3)
    labels = [n for c in ("bodypart", "type", "attribute") for n in byClass.get(c, [])[:per]]
    import torch

    torch.manual_seed(0)
    model = create_model("lesanet_demo", num_labels=len(labels))
    # Spread the thresholds so some labels come out positive and some negative from an untrained model.
    thresholds = np.linspace(0.2, 0.8, len(labels)).tolist()
    return save_checkpoint(path, model, arch="lesanet_demo", label_names=labels,
                           label_classes=[ontology.label_class(n) for n in labels],
                           ontology_digest=ontology.digest(), thresholds=thresholds, overwrite=True)


def sharedFixtures() -> tuple:
    """The module-scoped pytest fixtures the Slicer tests share: ``app``, ``checkpoint`` and ``logic``.

    A test module registers them with ``appFixture, checkpointFixture, logicFixture = sb.sharedFixtures()``;
    pytest finds fixtures among a module's attributes by their ``name``, so the variables' own names do not
    matter (and do not shadow the tests' parameters).
    """
    import pytest

    @pytest.fixture(scope="module", name="app")
    def appFixture():
        return bootstrap()

    @pytest.fixture(scope="module", name="checkpoint")
    def checkpointFixture(tmp_path_factory):
        return tinyCheckpoint(tmp_path_factory.mktemp("model") / "tiny.pt")

    @pytest.fixture(scope="module", name="logic")
    def logicFixture(app, checkpoint):
        from LesaNetSlicerLib.logic import AnnotationSettings, LesaNetLogic

        logic = LesaNetLogic(scene=app.scene)
        logic.settings = AnnotationSettings(modelPath=str(checkpoint), retrieval=False, device="cpu")
        yield logic
        logic.shutdown()

    return appFixture, checkpointFixture, logicFixture


def tinyWheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A real wheel of a one-module package, built offline with this interpreter's setuptools."""
    source = folder / f"src-{name}-{version}"
    (source / name).mkdir(parents=True)
    (source / name / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (source / "pyproject.toml").write_text(
        "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n"
        f"[project]\nname = \"{name}\"\nversion = \"{version}\"\ndependencies = {json.dumps(requires)}\n")
    wheels = folder / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return wheels
