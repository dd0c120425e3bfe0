"""Where LesaNetCore is, in an installed extension and in a source checkout.

Installed (built by CMake): ``qt-scripted-modules/`` holds ``LesaNetSlicer.py``, ``LesaNetSlicerLib/``,
``Resources/`` and ``LesaNetCore/`` side by side, and Slicer puts that folder on ``sys.path``. Source checkout
(the ``LesaNetSlicer`` folder added to Slicer's module paths): LesaNetCore sits one level up, in the repository
root, which is then added to ``sys.path``. The module's own ``Resources/`` are next to ``LesaNetSlicer.py`` in
both layouts, where ``ScriptedLoadableModule`` looks for them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]


def candidateRoots() -> list[Path]:
    """Folders that may hold ``LesaNetCore/``: next to the module, then one level up."""
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


def coreRoot() -> Path:
    """The folder that holds the ``LesaNetCore`` package this process imports (for the worker's path)."""
    import LesaNetCore

    return Path(LesaNetCore.__file__).resolve().parents[1]
