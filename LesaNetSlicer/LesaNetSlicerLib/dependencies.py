"""LesaNetCore's run-time requirements inside Slicer: what is missing, and installing it after asking.

Never at import time: the module must load and explain itself without them. Torch goes through the PyTorch
extension's ``PyTorchUtils`` when it is installed (it picks the CUDA build matching the machine); everything
else through ``slicer.util.pip_install`` into Slicer's own Python.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

# import name -> pip requirement (LesaNetCore's [model,report,ann] extras minus what annotation never uses).
REQUIREMENTS = {
    "numpy": "numpy>=1.24",
    "torch": "torch>=2.1,<3",
    "SimpleITK": "SimpleITK>=2.3",
    "pydicom": "pydicom>=3.0",
    "highdicom": "highdicom>=0.22",
    "faiss": "faiss-cpu>=1.7",
    "openpyxl": "openpyxl>=3.1",
    "tqdm": "tqdm>=4.60",
}


def missingDependencies(finder: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Import names of the requirements that cannot be imported, in ``REQUIREMENTS`` order."""
    missing = []
    for name in REQUIREMENTS:
        try:
            found = finder(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            missing.append(name)
    return missing


def describeMissing(missing: list[str]) -> str:
    """The sentence the widget shows while dependencies are missing."""
    if not missing:
        return "All dependencies are installed."
    return (f"LesaNet needs {', '.join(missing)} (not installed yet). Click Annotate to install them into "
            "Slicer's Python; torch comes from the PyTorch extension when it is installed.")


def installTorch(requirement: str) -> None:
    """Installs torch through the PyTorch extension when present (right CUDA build), else with pip."""
    try:
        import PyTorchUtils
    except ImportError:
        PyTorchUtils = None
    if PyTorchUtils is not None:
        logic = PyTorchUtils.PyTorchUtilsLogic()
        if logic.installTorch(askConfirmation=False, torchVersionRequirement=requirement.removeprefix("torch")) \
                is None:
            raise RuntimeError("torch: the PyTorch extension could not install it")
        return
    import slicer

    slicer.util.pip_install(requirement)


def ensureDependencies(ask: bool = True, confirm: Callable[[str], bool] | None = None,
                       pipInstall: Callable[[str], None] | None = None,
                       torchInstaller: Callable[[str], None] | None = None,
                       finder: Callable[[str], object] = importlib.util.find_spec) -> bool:
    """Installs what is missing; returns True when everything is importable afterwards.

    Args:
        ask: ask the user first (Slicer's OK/Cancel dialog); a refusal returns False and installs nothing.
        confirm: the question dialog (default ``slicer.util.confirmOkCancelDisplay``).
        pipInstall: installs one requirement (default ``slicer.util.pip_install``).
        torchInstaller: installs torch (default ``installTorch``).
        finder: how to tell whether a module is importable.
    """
    missing = missingDependencies(finder)
    if not missing:
        return True
    if confirm is None or pipInstall is None:
        import slicer

        confirm = confirm or slicer.util.confirmOkCancelDisplay
        pipInstall = pipInstall or slicer.util.pip_install
    if ask and not confirm(f"LesaNet needs these Python packages: {', '.join(REQUIREMENTS[m] for m in missing)}."
                           "\n\nInstall them now? This can take several minutes."):
        return False
    torchInstaller = torchInstaller or installTorch
    if "torch" in missing:
        torchInstaller(REQUIREMENTS["torch"])
    others = [REQUIREMENTS[m] for m in missing if m != "torch"]
    if others:
        pipInstall(" ".join(others))
    importlib.invalidate_caches()
    return not missingDependencies(finder)
