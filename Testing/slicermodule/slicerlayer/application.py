"""The stand-in for Slicer's application object (``slicer.app``) and its module manager.

What our module and Slicer's Python layer ask of ``slicer.app``, with the C++ names: the application logic (the
real ``vtkSlicerApplicationLogic`` of slicer-core), the module manager with ``moduleAboutToBeUnloaded``, the
settings, testing mode, the version numbers (``majorVersion``, ``minorVersion``; what the module checks),
cursors, ``processEvents``, ``translate`` and the temporary path. Modules are objects with ``path``,
``logic()`` and ``widgetRepresentation()`` as ``qSlicerAbstractModule`` offers them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import Property, QCoreApplication, QObject, QProcessEnvironment, QSettings, Signal
from PySide6.QtWidgets import QApplication


class ModuleManager(QObject):
    """``qSlicerModuleManager``: modules by name and the unload signal scripted widgets observe."""

    moduleAboutToBeUnloaded = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.modules: dict[str, object] = {}

    def module(self, name: str):
        return self.modules.get(name)

    def moduleNames(self) -> list[str]:
        return list(self.modules)


class LoadableModule(QObject):
    """A C++ loadable module (``qSlicerAbstractModule``) with its logic."""

    def __init__(self, name: str, logic) -> None:
        super().__init__()
        self._name = name
        self._logic = logic
        self.path = ""

    def name(self) -> str:
        return self._name

    def logic(self):
        return self._logic


class ScriptedModule(QObject):
    """``qSlicerScriptedLoadableModule``: a Python module file, its module instance and its widget panel."""

    def __init__(self, name: str, path: Path, widgetClass) -> None:
        super().__init__()
        self._name = name
        self.path = str(path)
        self.title = ""
        self.categories: list[str] = []
        self.dependencies: list[str] = []
        self.contributors: list[str] = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.icon = None
        self._widgetClass = widgetClass
        self._panel = None

    def name(self) -> str:
        return self._name

    def logic(self):
        return None

    def widgetRepresentation(self):
        """The module panel, created and set up on first use (what opening the module does)."""
        if self._panel is None:
            import slicer

            self._panel = self._widgetClass()

            def factory(panel):
                module = __import__(self._name)
                widget = getattr(module, f"{self._name}Widget")(panel)
                setattr(slicer.modules, f"{self._name}Widget", widget)
                return widget

            self._panel.setPythonWidgetFactory(factory)
            self._panel.reload()
        return self._panel


class SlicerApplication(QObject):
    """``qSlicerApplication``: see the module docstring.

    Args:
        version: (major, minor, patch) the application reports.
        logic: the ``vtkSlicerApplicationLogic``.
        scene: the MRML scene.
        testing: ``testingEnabled()`` (message boxes return their default answer in testing mode).
    """

    startupCompleted = Signal()

    def __init__(self, version: tuple[int, int, int], logic, scene, testing: bool = True) -> None:
        super().__init__()
        self._version = version
        self._logic = logic
        self._scene = scene
        self._testing = testing
        self._moduleManager = ModuleManager()
        self._temporary = tempfile.mkdtemp(prefix="slicer-app-")
        self.overrideCursorDepth = 0
        self.restartRequested = False

    majorVersion = Property(int, lambda self: self._version[0])
    minorVersion = Property(int, lambda self: self._version[1])
    patchVersion = Property(int, lambda self: self._version[2])
    applicationVersion = Property(str, lambda self: ".".join(str(v) for v in self._version))
    applicationName = Property(str, lambda self: "Slicer")
    temporaryPath = Property(str, lambda self: self._temporary)
    slicerHome = Property(str, lambda self: str(Path(os.sys.executable).resolve().parents[1]))

    def applicationLogic(self):
        return self._logic

    def mrmlScene(self):
        return self._scene

    def moduleManager(self) -> ModuleManager:
        return self._moduleManager

    def testingEnabled(self) -> bool:
        return self._testing

    def setTestingEnabled(self, enabled: bool) -> None:
        self._testing = bool(enabled)

    def settings(self) -> QSettings:
        return QSettings()

    def userSettings(self) -> QSettings:
        return QSettings()

    def revisionUserSettings(self) -> QSettings:
        return QSettings()

    def processEvents(self, *args) -> None:
        QApplication.processEvents(*args)

    def setOverrideCursor(self, cursor) -> None:
        self.overrideCursorDepth += 1

    def restoreOverrideCursor(self) -> None:
        self.overrideCursorDepth -= 1

    def translate(self, context: str, text: str) -> str:
        return text

    def thread(self):
        return QCoreApplication.instance().thread()

    def startupEnvironment(self) -> QProcessEnvironment:
        return QProcessEnvironment.systemEnvironment()

    def layoutManager(self):
        return None

    def topLevelWidgets(self) -> list:
        return QApplication.topLevelWidgets()

    def pauseRender(self) -> None:
        pass

    def resumeRender(self) -> None:
        pass

    def restart(self) -> None:
        self.restartRequested = True
