"""Slicer's real Python layer over slicer-core's real MRML, for testing the module as it runs in 3D Slicer.

``SlicerLayer.load("5.12.3")`` assembles, in this process, what a module sees inside Slicer:

* ``slicer``: the ``slicer-core`` wheel's real MRML classes and C++ logics (markups, colours, segmentations)
  with Slicer's own pure-Python package of that release read in place from ``../shared/slicer/Slicer-vX``
  (its ``__init__``, ``util``, ``ScriptedLoadableModule``, ``parameterNodeWrapper``, ``packaging``, ``i18n``);
* ``qt``: PySide6 under PythonQt's rules (``pythonqt.py``);
* stand-ins only for the application object (``application.py``) and the C++ widgets of CTK and Slicer
  (``widgets.py``).

``loadModule(path)`` then loads a scripted module the way the application does: the module class gets a
parent with ``path`` and the help fields, and its panel comes from ``slicer.modules.<name>.widgetRepresentation()``.
``unload()`` puts the process back (modules, PySide6's rules, slicer-core's ``slicer.util``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_SLICER = Path(os.environ.get("LESANET_SHARED_SLICER", REPO_ROOT.parent / "shared" / "slicer"))
VERSIONS = ("5.10.0", "5.12.3")
_LAYER_MODULES = ("slicer.util", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper", "slicer.packaging",
                  "slicer.i18n", "slicer.logic", "slicer.testing", "slicer.cli", "slicer.modules",
                  "slicer.moduleNames", "slicer.release", "slicer.kits")


def pythonLayerPath(version: str) -> Path:
    return SHARED_SLICER / f"Slicer-v{version}" / "Base" / "Python" / "slicer"


def unavailable(version: str) -> str | None:
    """Why the layer of ``version`` cannot be loaded here (for pytest.skip), or None."""
    if importlib.util.find_spec("slicer_core") is None:
        return "the slicer-core wheel is not installed (pip install slicer-core)"
    if importlib.util.find_spec("PySide6") is None:
        return "PySide6 is not installed"
    if not (pythonLayerPath(version) / "util.py").is_file():
        return f"Slicer's Python layer {version} is not present at {pythonLayerPath(version)} (../shared/slicer)"
    return None


def _isLayerModule(name: str) -> bool:
    """Modules that must be imported afresh inside the layer (ours included: they bind to ``qt`` and ``slicer``)."""
    return (name in ("qt", "ctk") or name.startswith("LesaNetSlicer")
            or any(name == m or name.startswith(m + ".") for m in _LAYER_MODULES))


# What Qt's .ui loader says about the stand-ins' Python-declared signals and CTK's enum-typed properties; the
# connections are made by ``pythonqt.UiLoader`` instead, and the enums are not used by the module.
_EXPECTED_QT_MESSAGES = ("No such signal qMRMLWidget::", "(sender name:", "(receiver name:",
                         "of the set-type property filters could not be read")


def _qtMessageHandler(mode, context, message) -> None:
    if not any(text in message for text in _EXPECTED_QT_MESSAGES):
        sys.stderr.write(message + "\n")


class SlicerLayer:
    """One loaded Slicer Python layer; see the module docstring. Attributes: ``slicer``, ``app``, ``scene``,
    ``appLogic``, ``markupsLogic``, ``version``."""

    def __init__(self, version: str, reported: tuple[int, int, int] | None = None) -> None:
        self.version = version
        self.reported = reported or tuple(int(v) for v in version.split("."))
        self._saved: dict[str, ModuleType] = {}
        self._savedAttributes: dict[str, object] = {}
        self._savedPath: list[str] = []
        self._settingsDir = tempfile.mkdtemp(prefix="slicer-settings-")
        self.modules: list[str] = []

    # ---------------------------------------------------------------------------------------------- load
    @classmethod
    def load(cls, version: str, reported: tuple[int, int, int] | None = None) -> SlicerLayer:
        layer = cls(version, reported)
        layer._load()
        return layer

    def _load(self) -> None:
        from PySide6.QtCore import QCoreApplication, QSettings
        from PySide6.QtWidgets import QApplication

        from . import application, pythonqt, widgets

        QCoreApplication.setOrganizationName("LesaNetTests")
        QCoreApplication.setApplicationName("SlicerLayer")
        QSettings.setDefaultFormat(QSettings.IniFormat)
        QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, self._settingsDir)
        self.qapp = QApplication.instance() or QApplication([])

        import slicer

        self._savedPath = list(slicer.__path__)
        for name in list(sys.modules):
            if _isLayerModule(name):
                self._saved[name] = sys.modules.pop(name)
        for name in ("app", "mrmlScene", "util", "modules", "moduleNames"):
            if hasattr(slicer, name):
                self._savedAttributes[name] = getattr(slicer, name)

        from PySide6.QtCore import qInstallMessageHandler

        self._previousHandler = qInstallMessageHandler(_qtMessageHandler)
        pythonqt.install()
        ctk = widgets.ctkModule()
        sys.modules["qt"] = pythonqt.qtModule()
        sys.modules["ctk"] = ctk
        pythonqt.UiLoader.customClasses = {
            **{name: getattr(ctk, name) for name in dir(ctk) if name.startswith("ctk")},
            **widgets.slicerWidgetClasses(ctk)}
        for name, cls in widgets.slicerWidgetClasses(ctk).items():
            setattr(slicer, name, cls)

        layerPath = pythonLayerPath(self.version)
        slicer.__path__.insert(0, str(layerPath))
        # Slicer's own package __init__: creates slicer.modules and slicer.moduleNames (real code, run in place).
        source = (layerPath / "__init__.py").read_text()
        exec(compile(source, str(layerPath / "__init__.py"), "exec"), slicer.__dict__)
        importlib.import_module("slicer.util")

        self.scene = slicer.vtkMRMLScene()
        self.appLogic = slicer.vtkSlicerApplicationLogic()
        self.appLogic.SetMRMLScene(self.scene)
        colorLogic = self.appLogic.GetColorLogic()
        colorLogic.SetMRMLScene(self.scene)
        colorLogic.AddDefaultColorNodes()
        import vtk

        self.appLogic.SetSliceLogics(vtk.vtkCollection())
        self.appLogic.SetViewLogics(vtk.vtkCollection())
        self.markupsLogic = slicer.vtkSlicerMarkupsLogic()
        self.markupsLogic.SetMRMLApplicationLogic(self.appLogic)
        self.markupsLogic.SetMRMLScene(self.scene)
        self.appLogic.SetModuleLogic("Markups", self.markupsLogic)
        self.app = application.SlicerApplication(self.reported, self.appLogic, self.scene)
        slicer.app = self.app
        slicer.mrmlScene = self.scene
        markups = application.LoadableModule("Markups", self.markupsLogic)
        self.app.moduleManager().modules["Markups"] = markups
        slicer.modules.markups = markups
        slicer.moduleNames.Markups = "Markups"
        self.slicer = slicer

    def loadModule(self, path: Path):
        """Loads a scripted module file as Slicer's module factory does; returns the module instance."""
        from . import widgets

        slicer = self.slicer
        name = path.stem
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        self.modules.append(name)
        from .application import ScriptedModule

        parent = ScriptedModule(name, path, widgets.qSlicerScriptedLoadableModuleWidget)
        instance = getattr(module, name)(parent)
        setattr(slicer.modules, name.lower(), parent)
        setattr(slicer.modules, f"{name}Instance", instance)
        setattr(slicer.moduleNames, name, name)
        self.app.moduleManager().modules[name] = parent
        return instance

    def widget(self, name: str, enter: bool = True):
        """The module's Python widget: set up on first use and entered, as selecting the module in Slicer does."""
        panel = getattr(self.slicer.modules, name.lower()).widgetRepresentation()
        if enter and not panel.isEntered:
            panel.enter()
        return panel.pythonWidget

    def processEvents(self, seconds: float = 0.0) -> None:
        """Turns the event loop (for ``seconds``, at least once)."""
        import time

        from PySide6.QtCore import QCoreApplication

        end = time.perf_counter() + seconds
        while True:
            QCoreApplication.processEvents()
            if time.perf_counter() >= end:
                return
            time.sleep(0.002)

    # -------------------------------------------------------------------------------------------- unload
    def unload(self) -> None:
        """Closes the module panels, then restores the process as it was before ``load``."""
        from PySide6.QtCore import QCoreApplication

        from . import pythonqt

        slicer = self.slicer
        for name in self.modules:
            self.app.moduleManager().moduleAboutToBeUnloaded.emit(name)
            panel = getattr(slicer.modules, name.lower(), None)
            if panel is not None and panel._panel is not None:
                panel._panel.deleteLater()
        QCoreApplication.processEvents()
        self.scene.Clear(True)
        for name in list(sys.modules):
            if _isLayerModule(name) or name in self.modules:
                del sys.modules[name]
        sys.modules.update(self._saved)
        slicer.__path__[:] = self._savedPath
        for name in ("app", "mrmlScene", "modules", "moduleNames", "util", "ScriptedLoadableModule",
                     "parameterNodeWrapper", "packaging", "i18n"):
            if name in self._savedAttributes:
                setattr(slicer, name, self._savedAttributes[name])
            elif name in slicer.__dict__:
                delattr(slicer, name)
        pythonqt.uninstall()
        from PySide6.QtCore import qInstallMessageHandler

        qInstallMessageHandler(self._previousHandler)
        for folder in (self._settingsDir, self.app.temporaryPath):
            shutil.rmtree(folder, ignore_errors=True)
