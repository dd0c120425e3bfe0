"""Where LesaNetCore and the Slicer resources are, in an installed extension and in a source checkout.

Installed (built by CMake): ``qt-scripted-modules/`` holds ``LesaNetSlicer.py``, ``LesaNetSlicerLib/``,
``LesaNetCore/`` and ``Resources/`` side by side, and Slicer puts that folder on ``sys.path``. Source checkout
(the ``LesaNetSlicer`` folder added to Slicer's module paths): LesaNetCore and Resources sit one level up, in
the repository root, which is therefore added to ``sys.path`` when LesaNetCore is not importable otherwise.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]


def candidateRoots() -> list[Path]:
    """Folders that may hold ``LesaNetCore/`` and ``Resources/``: next to the module, then one level up."""
    return [MODULE_DIR, MODULE_DIR.parent]


def ensureCoreImportable() -> Path | None:
    """Makes ``import LesaNetCore`` work; returns the folder added to ``sys.path`` (None when none was needed).

    A LesaNetCore that is already importable (pip-installed, or installed next to the module) wins, so a
    source checkout never shadows an installed core by accident.
    """
    if importlib.util.find_spec("LesaNetCore") is not None:
        return None
    for root in candidateRoots():
        if (root / "LesaNetCore" / "__init__.py").is_file():
            sys.path.insert(0, str(root))
            importlib.invalidate_caches()
            return root
    return None


def resourcePath(relative: str) -> Path:
    """Path of a file under ``Resources/`` (installed layout first, then the source layout).

    Raises:
        FileNotFoundError: naming every place searched.
    """
    tried = []
    for root in candidateRoots():
        path = root / "Resources" / relative
        if path.exists():
            return path
        tried.append(str(path))
    raise FileNotFoundError(f"resource {relative!r}: must exist, but none of {tried} does")
