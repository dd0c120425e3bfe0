"""Minimal stand-ins for the C++ Qt widgets of CTK and Slicer (ctk*, qMRML*), with their real API shape.

Only these widgets and the application object are stood in; everything else in the Slicer-layer tests is the
real piece (Slicer's Python layer, slicer-core's MRML and logics, Qt through PySide6). Each stand-in declares
the C++ widget's Qt properties and signals under their C++ names, so Slicer's own code (parameterNodeWrapper's
GUI connectors, ``slicer.util``) and our module reach them exactly as in Slicer, and behaves as the C++ widget
does where the module depends on it: ``qMRMLNodeComboBox`` follows the scene (nodes added and removed, the
``nodeTypes`` filter, auto-selection when None is not allowed); ``ctkSliderWidget`` clamps and rounds;
``ctkCollapsibleButton`` hides its contents when collapsed.
"""

from __future__ import annotations

import importlib.machinery
import types

import vtk
from PySide6.QtCore import Property, QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)


def _property(kind, name: str, default, notify=None, setter=None):
    """A Qt property stored in ``self._<name>`` (optionally through a custom setter)."""
    attribute = f"_{name}"

    def get(self):
        return getattr(self, attribute, default)

    def set_(self, value):
        if setter is not None:
            setter(self, value)
        else:
            setattr(self, attribute, value)

    return Property(kind, get, set_, notify=notify) if notify is not None else Property(kind, get, set_)


class qMRMLWidget(QWidget):
    """``qMRMLWidget``: a QWidget that knows the scene and re-broadcasts it to its MRML children."""

    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qSlicerWidget(qMRMLWidget):
    """``qSlicerWidget``."""


class qMRMLNodeComboBox(QWidget):
    """``qMRMLNodeComboBox``: selects one node of the scene among those of ``nodeTypes``.

    As the C++ widget: setting the scene lists the matching nodes; when None is not allowed the first one
    becomes current, and a matching node added later becomes current when none is; removing the current node
    moves the selection on (or to None); ``currentNodeChanged`` carries the node (or None) and
    ``currentNodeIDChanged`` its ID.
    """

    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)
    nodeAdded = Signal(object)
    nodeAboutToBeRemoved = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None
        self._currentNodeID = ""
        self._observations: list[int] = []

    nodeTypes = _property(list, "nodeTypes", [])
    noneEnabled = _property(bool, "noneEnabled", False)
    addEnabled = _property(bool, "addEnabled", True)
    removeEnabled = _property(bool, "removeEnabled", True)
    renameEnabled = _property(bool, "renameEnabled", False)
    editEnabled = _property(bool, "editEnabled", False)
    showHidden = _property(bool, "showHidden", False)
    showChildNodeTypes = _property(bool, "showChildNodeTypes", True)
    selectNodeUponCreation = _property(bool, "selectNodeUponCreation", True)
    baseName = _property(str, "baseName", "")
    noneDisplay = _property(str, "noneDisplay", "None")

    def _getCurrentNodeID(self) -> str:
        return self._currentNodeID or ""

    def _setCurrentNodeID(self, nodeID: str) -> None:
        self.setCurrentNodeID(nodeID)

    currentNodeID = Property(str, _getCurrentNodeID, _setCurrentNodeID)

    # ---------------------------------------------------------------------------------------------- scene
    def setMRMLScene(self, scene) -> None:
        if self._scene is not None:
            for tag in self._observations:
                self._scene.RemoveObserver(tag)
        self._observations = []
        self._scene = scene
        if scene is not None:
            self._observations = [scene.AddObserver(scene.NodeAddedEvent, self._onNodeAdded),
                                  scene.AddObserver(scene.NodeRemovedEvent, self._onNodeRemoved),
                                  scene.AddObserver(scene.EndCloseEvent, self._onSceneClosed)]
            # As the C++ widget's destructor does: no scene event reaches a deleted widget.
            tags = list(self._observations)
            self.destroyed.connect(lambda *_: [scene.RemoveObserver(tag) for tag in tags])
        current = self.currentNode()
        if current is None and not self.noneEnabled:
            nodes = self.nodes()
            self._select(nodes[0] if nodes else None)
        elif current is not None and not self._matches(current):
            self._select(None)

    def mrmlScene(self):
        return self._scene

    def _matches(self, node) -> bool:
        if node is None or (node.GetHideFromEditors() and not self.showHidden):
            return False
        for name in self.nodeTypes:
            if node.IsA(name) and (self.showChildNodeTypes or node.GetClassName() == name):
                return True
        return False

    def nodes(self) -> list:
        """The matching nodes, in scene order."""
        if self._scene is None:
            return []
        return [n for n in (self._scene.GetNthNode(i) for i in range(self._scene.GetNumberOfNodes()))
                if self._matches(n)]

    def nodeCount(self) -> int:
        return len(self.nodes())

    # -------------------------------------------------------------------------------------------- current
    def currentNode(self):
        if self._scene is None or not self._currentNodeID:
            return None
        node = self._scene.GetNodeByID(self._currentNodeID)
        return node if self._matches(node) else None

    def setCurrentNode(self, node) -> None:
        if node is not None and not self._matches(node):
            return  # the C++ widget ignores nodes it does not list
        if node is None and not self.noneEnabled and self.nodes():
            return
        self._select(node)

    def setCurrentNodeID(self, nodeID: str) -> None:
        self.setCurrentNode(self._scene.GetNodeByID(nodeID) if (self._scene is not None and nodeID) else None)

    def _select(self, node) -> None:
        nodeID = node.GetID() if node is not None else ""
        if nodeID == self._currentNodeID:
            return
        self._currentNodeID = nodeID
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(nodeID)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAdded(self, caller, event, node) -> None:
        if self._matches(node):
            self.nodeAdded.emit(node)
            if self.currentNode() is None and not self.noneEnabled:
                self._select(node)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeRemoved(self, caller, event, node) -> None:
        if node is not None and node.GetID() == self._currentNodeID:
            self.nodeAboutToBeRemoved.emit(node)
            self._moveSelectionOn()

    def _onSceneClosed(self, caller, event) -> None:
        if self._currentNodeID and self.currentNode() is None:
            self._moveSelectionOn()

    def _moveSelectionOn(self) -> None:
        remaining = [] if self.noneEnabled else self.nodes()
        self._currentNodeID = None  # the old node is gone: the next selection always notifies
        self._select(remaining[0] if remaining else None)


class ctkPathLineEdit(QWidget):
    """``ctkPathLineEdit``: a path with ``currentPath`` and ``currentPathChanged(QString)``."""

    currentPathChanged = Signal(str)
    validInputChanged = Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._lineEdit = QLineEdit(self)
        self._currentPath = ""

    def _setPath(self, path) -> None:
        path = str(path)
        if path != self._currentPath:
            self._currentPath = path
            self._lineEdit.setText(path)
            self.currentPathChanged.emit(path)

    currentPath = _property(str, "currentPath", "", setter=_setPath)
    filters = _property(int, "filters", 0)
    nameFilters = _property(list, "nameFilters", [])
    settingKey = _property(str, "settingKey", "")
    showHistoryButton = _property(bool, "showHistoryButton", True)
    showBrowseButton = _property(bool, "showBrowseButton", True)

    def setCurrentPath(self, path) -> None:
        self._setPath(path)


class ctkDirectoryButton(QPushButton):
    """``ctkDirectoryButton``."""

    directoryChanged = Signal(str)
    directory = _property(str, "directory", "")


class ctkSliderWidget(QWidget):
    """``ctkSliderWidget``: a double value kept within [minimum, maximum] and rounded to ``decimals``."""

    valueChanged = Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._minimum, self._maximum, self._value, self._decimals = 0.0, 99.0, 0.0, 2

    def _setValue(self, value) -> None:
        value = round(min(max(float(value), self._minimum), self._maximum), self._decimals)
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def _setMinimum(self, value) -> None:
        self._minimum = float(value)
        self._maximum = max(self._maximum, self._minimum)
        self._setValue(self._value)

    def _setMaximum(self, value) -> None:
        self._maximum = float(value)
        self._minimum = min(self._minimum, self._maximum)
        self._setValue(self._value)

    def _setDecimals(self, value) -> None:
        self._decimals = int(value)
        self._setValue(self._value)

    value = _property(float, "value", 0.0, setter=_setValue)
    minimum = _property(float, "minimum", 0.0, setter=_setMinimum)
    maximum = _property(float, "maximum", 99.0, setter=_setMaximum)
    decimals = _property(int, "decimals", 2, setter=_setDecimals)
    singleStep = _property(float, "singleStep", 1.0)
    pageStep = _property(float, "pageStep", 10.0)
    tracking = _property(bool, "tracking", True)
    suffix = _property(str, "suffix", "")
    prefix = _property(str, "prefix", "")

    def setValue(self, value) -> None:
        self._setValue(value)


class ctkCollapsibleButton(QPushButton):
    """``ctkCollapsibleButton``: a button whose contents (its layout's widgets) hide while collapsed."""

    contentsCollapsed = Signal(bool)

    def _setCollapsed(self, collapsed) -> None:
        collapsed = bool(collapsed)
        self._collapsed = collapsed
        for child in self.findChildren(QWidget):
            if child.parent() is self:
                child.setVisible(not collapsed)
        self.contentsCollapsed.emit(collapsed)

    collapsed = _property(bool, "collapsed", False, setter=_setCollapsed)
    collapsedHeight = _property(int, "collapsedHeight", 14)


class qSlicerScriptedLoadableModuleWidget(qSlicerWidget):
    """``qSlicerScriptedLoadableModuleWidget``: the module panel that hosts a scripted module's Python widget.

    Created by the application's module; ``setPythonWidgetClass`` is how the C++ side learns which Python class
    to instantiate, ``reload()`` instantiates it anew from the (re-imported) module, as Slicer's does.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setLayout(QVBoxLayout())
        self._entered = False
        self._factory = None
        self.pythonWidget = None

    def _getEntered(self) -> bool:
        return self._entered

    isEntered = Property(bool, _getEntered)

    def self(self):
        """The Python widget (what ``slicer.util.getModuleWidget`` returns for a scripted module)."""
        return self.pythonWidget

    def setPythonWidgetFactory(self, factory) -> None:
        self._factory = factory

    def reload(self) -> None:
        self.pythonWidget = self._factory(self)
        self.pythonWidget.setup()
        if self._entered:
            self.pythonWidget.enter()

    def enter(self) -> None:
        self._entered = True
        if hasattr(self.pythonWidget, "enter"):
            self.pythonWidget.enter()

    def exit(self) -> None:
        if hasattr(self.pythonWidget, "exit"):
            self.pythonWidget.exit()
        self._entered = False


def ctkModule() -> types.ModuleType:
    """The ``ctk`` module as PythonQt presents it (the classes Slicer's Python layer names)."""
    module = types.ModuleType("ctk", "CTK's Qt widgets: stand-ins for tests")
    module.__spec__ = importlib.machinery.ModuleSpec("ctk", None)
    module.ctkPathLineEdit = ctkPathLineEdit
    module.ctkDirectoryButton = ctkDirectoryButton
    module.ctkSliderWidget = ctkSliderWidget
    module.ctkCollapsibleButton = ctkCollapsibleButton
    for name, base in (("ctkCheckBox", QCheckBox), ("ctkComboBox", QComboBox),
                       ("ctkDoubleSpinBox", QDoubleSpinBox), ("ctkDoubleSlider", QSlider),
                       ("ctkRangeWidget", QWidget), ("ctkDoubleRangeSlider", QWidget),
                       ("ctkColorPickerButton", QPushButton), ("ctkCheckablePushButton", QPushButton),
                       ("ctkMessageBox", QMessageBox)):
        setattr(module, name, type(name, (base,), {"__doc__": f"``{name}`` (no behaviour the module uses)"}))
    module.ctkWidgetsUtils = types.SimpleNamespace(grabWidget=lambda widget: widget.grab().toImage())
    return module


def slicerWidgetClasses(ctk: types.ModuleType) -> dict[str, type]:
    """The qMRML/qSlicer widget classes that live in the ``slicer`` namespace inside Slicer."""
    classes = {"qMRMLWidget": qMRMLWidget, "qSlicerWidget": qSlicerWidget, "qMRMLNodeComboBox": qMRMLNodeComboBox,
               "qSlicerScriptedLoadableModuleWidget": qSlicerScriptedLoadableModuleWidget}
    classes["qMRMLSliderWidget"] = type("qMRMLSliderWidget", (ctkSliderWidget,), {})
    classes["qMRMLSpinBox"] = type("qMRMLSpinBox", (ctk.ctkDoubleSpinBox,), {})
    classes["qMRMLRangeWidget"] = type("qMRMLRangeWidget", (ctk.ctkRangeWidget,), {})
    classes["qMRMLScreenShotDialog"] = type("qMRMLScreenShotDialog", (QObject,), {
        "FullLayout": 0, "ThreeD": 1, "Red": 2, "Yellow": 3, "Green": 4})
    return classes
