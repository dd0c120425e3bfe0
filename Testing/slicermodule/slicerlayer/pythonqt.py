"""PythonQt's view of Qt, emulated over PySide6, so Slicer's real Python layer and our module run as in Slicer.

Inside Slicer, Python sees Qt through PythonQt, which differs from PySide6 in ways that decide whether code works
(read from PythonQt's ``PythonQtInstanceWrapper_getattro`` / ``_setattro`` and ``PythonQtClassInfo::member``):

* ``widget.text`` is the Qt *property* (a str), not the method; properties come before methods, so
  ``spinBox.value``, ``comboBox.currentText`` and ``button.toolTip`` are values. ``name`` maps to
  ``objectName``.
* ``widget.enabled = False`` writes the property; a value the property cannot take raises.
* Assigning a name that is neither a property nor a dynamic property on a C++ object (not a Python subclass)
  raises ``AttributeError`` ("creating new attributes on C++ objects is not allowed"); assigning over a slot or
  signal raises too. A typo such as ``button.enable = True`` therefore fails loudly, as in Slicer.
* ``obj.connect("clicked(bool)", callable)`` connects by C++ signature; ``obj.className()`` gives the C++ class.
* Unknown attributes fall back to dynamic properties, then to children by object name.

``install()`` patches every QObject class of PySide6's QtCore, QtGui, QtWidgets and QtUiTools with these rules
(per class, because Shiboken gives every class its own attribute slots; plain QObjects keep PySide6's
assignment rule) and ``uninstall()`` restores them, so
tests that use PySide6's own rules (the panel under Qt.py) are unaffected. ``qtModule()`` is the ``qt`` module
Slicer code imports: every PySide6 class by its plain name plus a ``QUiLoader`` that builds the stand-ins of
Slicer's C++ widgets (``widgets.py``) and honours the .ui file's signal/slot connections.
"""

from __future__ import annotations

import importlib.machinery
import re
import types
import xml.etree.ElementTree as ET

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

_MODULES = (QtCore, QtGui, QtWidgets, QtUiTools)
_SIGNATURE = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")
_ARGUMENT_TYPES = {"int": int, "double": float, "float": float, "bool": bool, "QString": str}
_patched: list[tuple[type, dict]] = []
# Each class's own attribute getter before install (QFile, QProcess and QMenu have their own, for methods that
# are both static and bound); the object's nearest one is what PySide6 would have called.
_ownGetters: dict[type, object] = {}
_originalSet = QtCore.QObject.__setattr__
_PYSIDE_MODULE = re.compile(r"^(PySide6|shiboken6)(\.|$)")


def _originalGet(obj, name: str):
    for cls in type(obj).__mro__:
        getter = _ownGetters.get(cls)
        if getter is not None:
            return getter(obj, name)
    return object.__getattribute__(obj, name)


def _isCppClass(cls: type) -> bool:
    return bool(_PYSIDE_MODULE.match(getattr(cls, "__module__", "") or ""))


def _pythonAttribute(obj, name: str) -> bool:
    """True when ``name`` is in the instance dict or defined by a Python subclass (PythonQt looks there first)."""
    try:
        if name in _originalGet(obj, "__dict__"):
            return True
    except AttributeError:
        pass
    for cls in type(obj).__mro__:
        if _isCppClass(cls) or cls is object:
            break
        if name in cls.__dict__:
            return True
    return False


def _metaProperty(obj, name: str):
    metaObject = _originalGet(obj, "metaObject")()
    index = metaObject.indexOfProperty(name)
    if index < 0 and name == "name":
        index = metaObject.indexOfProperty("objectName")
    return metaObject.property(index) if index >= 0 else None


def _getattribute(obj, name: str):
    if name.startswith("_") or _pythonAttribute(obj, name):
        return _originalGet(obj, name)
    method = _PYTHONQT_METHODS.get(name)
    if method is not None:  # PySide6 resolves its own connect() even where QObject's class attribute is replaced
        return types.MethodType(method, obj)
    prop = _metaProperty(obj, name)
    if prop is not None:
        return prop.read(obj)
    try:
        return _originalGet(obj, name)
    except AttributeError:
        pass
    value = _originalGet(obj, "property")(name)
    if value is not None:
        return value
    for child in _originalGet(obj, "children")():
        if child.objectName() == name:
            return child
    raise AttributeError(f"{_originalGet(obj, 'metaObject')().className()} has no attribute named '{name}'")


def _setattr(obj, name: str, value) -> None:
    if name.startswith("_") or isinstance(value, QtCore.SignalInstance):  # PySide6 caches bound signals so
        _originalSet(obj, name, value)
        return
    prop = _metaProperty(obj, name)
    className = _originalGet(obj, "metaObject")().className()
    if prop is not None:
        if not prop.isWritable():
            raise AttributeError(f"Property '{name}' of {className} object is not writable")
        if isinstance(value, tuple):
            value = list(value)  # PythonQt converts any sequence for list-typed properties (QStringList)
        if not prop.write(obj, value):
            raise AttributeError(f"Property '{name}' of type '{prop.typeName()}' does not accept an object of type "
                                 f"{type(value).__name__} ({value!r})")
        return
    if not _pythonAttribute(obj, name):
        for cls in type(obj).__mro__:
            if _isCppClass(cls) and name in cls.__dict__:
                raise AttributeError(f"Slot '{name}' can not be overwritten on {className} object")
        if _originalGet(obj, "property")(name) is not None:
            _originalGet(obj, "setProperty")(name, value)
            return
        if _isCppClass(type(obj)):
            raise AttributeError(f"'{name}' does not exist on {className} and creating new attributes on C++ objects "
                                 "is not allowed")
    _originalSet(obj, name, value)


def _boundSignal(obj, signature: str):
    match = _SIGNATURE.match(signature)
    if match is None:
        raise ValueError(f"signal: must be a C++ signature such as 'clicked(bool)', but got {signature!r}")
    signal = _originalGet(obj, match.group(1))
    arguments = [a.strip() for a in match.group(2).split(",") if a.strip()]
    if len(arguments) == 1 and arguments[0] in _ARGUMENT_TYPES:
        try:
            return signal[_ARGUMENT_TYPES[arguments[0]]]
        except (KeyError, IndexError, TypeError):
            return signal
    return signal


def _connect(self, signature: str, receiver, slot: str | None = None) -> bool:
    """PythonQt's ``obj.connect("signal(args)", callable)`` (and ``(signal, receiverObject, "slot(args)")``)."""
    target = receiver if slot is None else getattr(receiver, _SIGNATURE.match(slot).group(1))
    _boundSignal(self, signature).connect(target)
    return True


def _disconnect(self, signature: str, receiver=None, slot: str | None = None) -> bool:
    signal = _boundSignal(self, signature)
    try:
        if receiver is None:
            signal.disconnect()
        else:
            signal.disconnect(receiver if slot is None else getattr(receiver, _SIGNATURE.match(slot).group(1)))
    except (RuntimeError, TypeError):
        return False
    return True


def _className(self) -> str:
    return _originalGet(self, "metaObject")().className()


_PYTHONQT_METHODS = {"connect": _connect, "disconnect": _disconnect, "className": _className}


def _qobjectClasses() -> list[type]:
    classes = []
    for module in _MODULES:
        for name in dir(module):
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, QtCore.QObject):
                classes.append(value)
    return classes


def install() -> None:
    """Gives PySide6 objects PythonQt's attribute, connection and naming rules (idempotent)."""
    if _patched:
        return
    for cls in _qobjectClasses():
        own = {name: cls.__dict__[name] for name in ("__getattribute__", "__setattr__") if name in cls.__dict__}
        if "__getattribute__" in own:
            _ownGetters[cls] = own["__getattribute__"]
        _patched.append((cls, own))
        cls.__getattribute__ = _getattribute
        # QObject keeps its own C-level __setattr__: _setattr ends in it, and CPython refuses to call a C
        # setattr slot that a patched class between it and the object's type would have jumped over.
        if cls is not QtCore.QObject:
            cls.__setattr__ = _setattr


def uninstall() -> None:
    """Restores PySide6's own rules (each class's own slot functions, as they were)."""
    while _patched:
        cls, own = _patched.pop()
        for name in ("__getattribute__", "__setattr__"):
            if name == "__setattr__" and cls is QtCore.QObject:
                continue
            if name in own:
                setattr(cls, name, own[name])
            elif name in cls.__dict__:
                delattr(cls, name)
    _ownGetters.clear()


class UiLoader(QtUiTools.QUiLoader):
    """PythonQt's ``qt.QUiLoader``: Slicer's designer plugins make its C++ widgets loadable; here the stand-ins.

    Qt's loader cannot make the .ui file's connections between the stand-ins' Python-declared signals and slots
    (it matches C++ signatures such as ``mrmlSceneChanged(vtkMRMLScene*)``), so ``load`` makes them afterwards
    by name, as Qt would have.
    """

    customClasses: dict[str, type] = {}

    def createWidget(self, className, parent=None, name=""):
        cls = self.customClasses.get(className)
        if cls is None:
            return super().createWidget(className, parent, name)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget

    def load(self, device, parent=None):
        path = device.fileName() if hasattr(device, "fileName") else str(device)
        widget = super().load(device, parent) if parent is not None else super().load(device)
        if widget is not None:
            _connectFromUi(widget, path)
        return widget


def _connectFromUi(root, path: str) -> None:
    tree = ET.parse(path)
    objectName = QtCore.QObject.objectName  # the method: under PythonQt's rules ``w.objectName`` is the value
    named = {objectName(w): w for w in root.findChildren(QtCore.QObject)}
    named[objectName(root)] = root
    for connection in tree.iter("connection"):
        sender = named.get(connection.findtext("sender"))
        receiver = named.get(connection.findtext("receiver"))
        if sender is None or receiver is None:
            raise RuntimeError(f"{path}: connection between unknown widgets {connection.findtext('sender')!r} -> "
                               f"{connection.findtext('receiver')!r}")
        signalName = _SIGNATURE.match(connection.findtext("signal")).group(1)
        slotName = _SIGNATURE.match(connection.findtext("slot")).group(1)
        if type(sender).__dict__.get(signalName) is None and not any(
                signalName in c.__dict__ for c in type(sender).__mro__ if not _isCppClass(c)):
            continue  # a C++ signal between C++ widgets: Qt's loader made it already
        getattr(sender, signalName).connect(getattr(receiver, slotName))


def qtModule() -> types.ModuleType:
    """The ``qt`` module as PythonQt presents it: every Qt class by plain name, and ``QUiLoader``."""
    module = types.ModuleType("qt", "PythonQt's qt module, emulated over PySide6 for tests")
    module.__spec__ = importlib.machinery.ModuleSpec("qt", None)
    for source in _MODULES:
        for name in dir(source):
            if name.startswith("Q") or name == "Qt":
                setattr(module, name, getattr(source, name))
    module.QUiLoader = UiLoader
    module.Slot = QtCore.Slot
    module.Signal = QtCore.Signal
    return module
