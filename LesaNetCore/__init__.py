"""LesaNetCore: LesaNet lesion annotation (Yan et al., CVPR 2019) without Slicer or Qt.

The public names below are imported lazily, so ``import LesaNetCore`` and ``lesanet --help`` stay fast and do
not pull in torch or SimpleITK until a name that needs them is used. See LesaNetCore/README.md for a map of
the modules.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "LesaNetError": "LesaNetCore.errors",
    "Ontology": "LesaNetCore.ontology",
    "Term": "LesaNetCore.ontology",
    "decide": "LesaNetCore.ontology",
    "load_default_ontology": "LesaNetCore.ontology",
    "load_ontology": "LesaNetCore.ontology",
    "read_label_split": "LesaNetCore.ontology",
    "read_official_ontology": "LesaNetCore.ontology",
    "AnnotationResult": "LesaNetCore.result",
    "LabelScore": "LesaNetCore.result",
    "LesionLocation": "LesaNetCore.result",
    "SimilarLesion": "LesaNetCore.result",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'LesaNetCore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
