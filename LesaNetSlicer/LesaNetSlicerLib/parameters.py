"""The module's typed parameter node: what the user chose, saved with the scene.

With Slicer >= 5.2, ``slicer.parameterNodeWrapper`` gives typed attributes and GUI bindings; older Slicer
versions and the ``slicer-core`` wheel lack it, so ``LesaNetParameters`` falls back to the same attributes
stored as string parameters and node references of the ``vtkMRMLScriptedModuleNode``. Both expose the same
names, and ``settings(parameters)`` turns either into the logic's ``AnnotationSettings``.
"""

from __future__ import annotations

from typing import Any

from .logic import AnnotationSettings

NODE_FIELDS = {"inputVolume": "vtkMRMLScalarVolumeNode", "roi": "vtkMRMLMarkupsROINode"}
VALUE_FIELDS: dict[str, tuple[type, Any]] = {
    "modelPath": (str, ""),
    "indexPath": (str, ""),
    "retrieval": (bool, True),
    "device": (str, "auto"),
    "thresholdOffset": (float, 0.0),
    "topK": (int, 5),
}


def _wrapperClass():
    try:
        from slicer.parameterNodeWrapper import parameterNodeWrapper
    except ImportError:
        return None
    import slicer

    @parameterNodeWrapper
    class LesaNetParameterNode:
        inputVolume: slicer.vtkMRMLScalarVolumeNode
        roi: slicer.vtkMRMLMarkupsROINode
        modelPath: str = ""
        indexPath: str = ""
        retrieval: bool = True
        device: str = "auto"
        thresholdOffset: float = 0.0
        topK: int = 5

    return LesaNetParameterNode


class FallbackParameters:
    """The same attributes as the wrapper, stored on a ``vtkMRMLScriptedModuleNode`` by hand."""

    def __init__(self, node: Any) -> None:
        object.__setattr__(self, "parameterNode", node)

    def __getattr__(self, name: str) -> Any:
        node = object.__getattribute__(self, "parameterNode")
        if name in NODE_FIELDS:
            return node.GetNodeReference(name)
        if name in VALUE_FIELDS:
            kind, default = VALUE_FIELDS[name]
            text = node.GetParameter(name)
            if not text:
                return default
            if kind is bool:
                return text == "true"
            return kind(text)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        node = object.__getattribute__(self, "parameterNode")
        if name in NODE_FIELDS:
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        elif name in VALUE_FIELDS:
            kind, _ = VALUE_FIELDS[name]
            if kind is bool:
                text = "true" if value else "false"
            else:
                text = str(kind(value))
            node.SetParameter(name, text)
        else:
            raise AttributeError(f"parameter: must be one of {sorted(NODE_FIELDS) + sorted(VALUE_FIELDS)}, "
                                 f"but got {name!r}")


_WRAPPER = None


def wrapParameterNode(node: Any, useWrapper: bool = True) -> Any:
    """Typed access to the module's parameter node (the Slicer wrapper when present, else the fallback)."""
    global _WRAPPER
    if useWrapper:
        if _WRAPPER is None:
            _WRAPPER = _wrapperClass() or False
        if _WRAPPER:
            return _WRAPPER(node)
    return FallbackParameters(node)


def settings(parameters: Any) -> AnnotationSettings:
    """The logic's settings from either kind of parameter object."""
    return AnnotationSettings(**{name: kind(getattr(parameters, name)) for name, (kind, _) in VALUE_FIELDS.items()})
