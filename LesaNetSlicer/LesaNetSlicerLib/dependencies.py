"""The worker's Python packages inside Slicer: what is missing, and installing it without breaking Slicer.

The requirements are the module's ``Resources/requirements.txt`` (the template's place): what LesaNetCore needs
to annotate and write SRs in the worker process. Slicer's main process itself only needs numpy, which Slicer
bundles. The rules, in ``plan``:

* versions are compared, not presence: a requirement is met when the installed version satisfies its specifier;
  a package Slicer bundles at a satisfying version is never reinstalled;
* torch goes through the PyTorch extension when it is installed (it picks the build that matches the GPU);
* a package whose needed version conflicts with one Slicer has *already imported* (Slicer 5.10 imports pydicom
  2.4.4 at start-up; highdicom needs pydicom >= 3) is installed for the worker only, into a private folder the
  worker puts first on its path (``workerPackagesPath``); what depends on it (highdicom) goes there too, so
  Slicer's own DICOM modules keep their pydicom;
* everything else goes into Slicer's Python: with ``slicer.packaging.pip_ensure`` on Slicer 5.12 and later (it
  asks, shows progress and offers a restart), else by pip in a subprocess whose progress the panel shows.

Nothing is installed at import time or without the user's consent.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
PACKAGES_ENV = "LESANET_WORKER_PACKAGES"
# Distributions that must sit beside another in the private folder: highdicom imports the pydicom next to it.
PRIVATE_WITH = {"highdicom": ("pydicom",)}
# Import names of distributions whose import name differs from the distribution's.
IMPORT_NAMES = {"pillow": "PIL", "faiss-cpu": "faiss", "scikit-image": "skimage", "simpleitk": "SimpleITK"}


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def importName(distribution: str) -> str:
    return IMPORT_NAMES.get(canonical(distribution), canonical(distribution).replace("-", "_"))


def loadRequirements(path: str | os.PathLike = REQUIREMENTS_FILE) -> list:
    """The requirements of a requirements file (comments and pip options skipped)."""
    from packaging.requirements import Requirement

    requirements = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def workerPackagesPath() -> Path:
    """The private folder of worker-only packages, per Python version (compiled packages depend on it)."""
    override = os.environ.get(PACKAGES_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "LesaNet" / f"worker-packages-py{sys.version_info[0]}{sys.version_info[1]}"


def workerPath() -> list[str]:
    """What the worker puts first on its ``sys.path`` (the private folder, when it exists)."""
    folder = workerPackagesPath()
    return [str(folder)] if folder.is_dir() else []


def installedVersions(paths: list[str] | None = None, names: Sequence[str] | None = None) -> dict[str, str]:
    """``{canonical name: version}`` of the distributions on ``paths`` (default: this Python's path).

    With ``names``, only those are looked up: Slicer's Python holds a few hundred distributions, and reading all
    their metadata on every Annotate click took 58-135 ms of the main thread (104 distributions).
    """
    importlib.invalidate_caches()
    where = {"path": paths} if paths is not None else {}
    if names is None:
        candidates = importlib.metadata.distributions(**where)
    else:
        candidates = (d for n in dict.fromkeys(names) for d in importlib.metadata.distributions(name=n, **where))
    found = {}
    for dist in candidates:
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


@dataclass
class InstallPlan:
    """What to install where; see the module docstring.

    Attributes:
        torch: the torch requirement when torch is missing or too old, else None.
        main: requirements for Slicer's Python.
        private: requirements for the worker-only folder.
        notes: one line per requirement that is not met, saying what was found.
    """

    torch: object = None
    main: list = field(default_factory=list)
    private: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.torch is None and not self.main and not self.private

    def describe(self) -> str:
        """For the panel and the confirmation dialog."""
        if self.empty:
            return "All of LesaNet's Python packages are installed."
        lines = ["LesaNet needs these Python packages:", *[f"- {note}" for note in self.notes]]
        if self.torch is not None:
            lines.append("torch comes from the PyTorch extension when it is installed (the build for your GPU).")
        if self.private:
            lines.append(f"Installed for LesaNet's worker only (Slicer keeps its own versions): "
                         f"{', '.join(str(r) for r in self.private)}, into {workerPackagesPath()}.")
        return "\n".join(lines)


def plan(requirements: list, mainVersions: dict[str, str], privateVersions: dict[str, str],
         imported: set[str]) -> InstallPlan:
    """Decides what is missing and where it goes (pure: the caller passes what is installed and imported).

    A requirement that Slicer's Python has at another version goes to the worker-only folder, so that no
    package Slicer ships is upgraded under it (the pressing case: an imported one, whose old code stays in
    memory); so does a requirement that must sit beside a private package (``PRIVATE_WITH``).

    Args:
        requirements: ``packaging`` Requirements.
        mainVersions: versions in Slicer's Python (``installedVersions()``).
        privateVersions: versions in the worker-only folder (``installedVersions([folder])``).
        imported: top-level module names already imported in Slicer's process (``sys.modules``).
    """
    result = InstallPlan()
    private = set(privateVersions)
    met = {}
    for requirement in requirements:
        name = canonical(requirement.name)
        version = privateVersions.get(name) or mainVersions.get(name)
        met[name] = version is not None and requirement.specifier.contains(version, prereleases=True)
        if met[name]:
            continue
        where = "imported by Slicer" if importName(name) in imported else "installed in Slicer"
        result.notes.append(f"{requirement} (found {f'{version}, {where}' if version else 'nothing'})")
        if name != "torch" and name in mainVersions:
            private.add(name)
    for requirement in requirements:
        name = canonical(requirement.name)
        if any(canonical(other) in private for other in PRIVATE_WITH.get(name, ())):
            private.add(name)
    for requirement in requirements:
        name = canonical(requirement.name)
        if met[name]:
            continue
        if name == "torch":
            result.torch = requirement
        elif name in private:
            result.private.append(requirement)
        else:
            result.main.append(requirement)
    return result


def currentPlan(requirements: list | None = None) -> InstallPlan:
    """The plan for this process: installed versions, the private folder, what Slicer has imported."""
    folder = workerPackagesPath()
    requirements = requirements if requirements is not None else loadRequirements()
    wanted = [canonical(r.name) for r in requirements]
    wanted += [other for name in wanted for other in PRIVATE_WITH.get(name, ())]
    return plan(requirements, installedVersions(names=wanted),
                installedVersions([str(folder)]) if folder.is_dir() else {},
                {name.split(".")[0] for name in sys.modules})


class PipProcess:
    """``python -m pip install ...`` in a subprocess, polled from the main thread (the panel shows its output).

    Args:
        arguments: pip's arguments after ``install``.
        python: the interpreter (default: Slicer's ``PythonSlicer``, as the worker uses).
    """

    def __init__(self, arguments: list[str], python: str | None = None) -> None:
        from .worker import defaultPython

        self.arguments = list(arguments)
        self.logPath = Path(tempfile.mkstemp(prefix="lesanet-pip-", suffix=".log")[1])
        self._log = open(self.logPath, "wb")  # noqa: SIM115 - closed when the process ends
        self.process = subprocess.Popen([python or defaultPython(), "-m", "pip", "install", *self.arguments],
                                        stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def poll(self) -> int | None:
        """The exit code once pip finished, else None."""
        code = self.process.poll()
        if code is not None and self._log is not None:
            self._log.close()
            self._log = None
        return code

    def lastLine(self) -> str:
        lines = [line for line in self.logPath.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.poll()


def privateInstallArguments(requirements: list, target: Path) -> list[str]:
    """pip arguments for the worker-only folder: ``--target`` without dependencies (they are planned here).

    ``--no-deps`` keeps pip from copying Slicer's numpy and the rest into the folder, where they would shadow
    Slicer's own in the worker; what the private packages need beyond that is checked by ``plan`` afterwards.
    """
    return ["--target", str(target), "--no-deps", "--upgrade", *[str(r) for r in requirements]]


def missingDependenciesOf(folder: Path, mainVersions: dict[str, str]) -> list:
    """Requirements of the packages in ``folder`` that neither the folder nor Slicer's Python meets."""
    from packaging.requirements import Requirement

    privateVersions = installedVersions([str(folder)])
    missing = []
    for dist in importlib.metadata.distributions(path=[str(folder)]):
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonical(requirement.name)
            version = privateVersions.get(name) or mainVersions.get(name)
            if version is None or not requirement.specifier.contains(version, prereleases=True):
                missing.append(requirement)
    return missing


def installTorch(requirement) -> None:
    """torch through the PyTorch extension when present (the right CUDA build), else with pip (blocking)."""
    try:
        import PyTorchUtils
    except ImportError:
        PyTorchUtils = None
    if PyTorchUtils is not None:
        logic = PyTorchUtils.PyTorchUtilsLogic()
        if logic.installTorch(askConfirmation=False, torchVersionRequirement=str(requirement.specifier)) is None:
            raise RuntimeError("torch: the PyTorch extension could not install it")
        return
    import slicer

    slicer.util.pip_install(str(requirement))


def hasPipEnsure() -> bool:
    """Slicer 5.12 and later: ``slicer.packaging.pip_ensure`` (progress dialog, restart prompt)."""
    try:
        import slicer.packaging
    except ImportError:
        return False
    return hasattr(slicer.packaging, "pip_ensure")


class InstallTask:
    """Carries out an ``InstallPlan`` step by step, polled like an annotation (see ``controller``).

    torch goes first (the PyTorch extension's own, blocking installer); then Slicer's Python
    (``slicer.packaging.pip_ensure`` where Slicer has it, which shows its own progress dialog, else pip in a
    subprocess); then the worker-only folder with pip in a subprocess, and a second round for what the private
    packages need that neither place has. Subprocess output shows in ``status`` as it comes.

    Args:
        installPlan: what to install (already confirmed by the user).
        python: the interpreter whose pip installs (default: Slicer's ``PythonSlicer``).
        usePipEnsure: force or forbid ``slicer.packaging.pip_ensure`` (default: when Slicer has it).
    """

    def __init__(self, installPlan: InstallPlan, python: str | None = None, usePipEnsure: bool | None = None) -> None:
        self.plan = installPlan
        self.python = python
        self.usePipEnsure = hasPipEnsure() if usePipEnsure is None else usePipEnsure
        self.status = "Installing LesaNet's Python packages..."
        self.done = False
        self.cancelled = False
        self.result = None
        self.error: Exception | None = None
        self.details = ""
        self._pip: PipProcess | None = None
        self._what = ""
        self._steps = []
        if installPlan.torch is not None:
            self._steps.append(self._torch)
        if installPlan.main:
            self._steps.append(self._main)
        if installPlan.private:
            self._steps += [self._private, self._privateDependencies]

    def step(self, budget: float = 0.015) -> bool:
        if self.done:
            return True
        try:
            if self._pip is not None:
                code = self._pip.poll()
                if code is None:
                    self.status = f"Installing {self._what}: {self._pip.lastLine()[:120]}"
                    return False
                pip, self._pip = self._pip, None
                if code != 0:
                    self.details = pip.log()
                    raise RuntimeError(f"pip could not install {self._what} (exit code {code}); the details show "
                                       f"its output (log: {pip.logPath})")
            if not self._steps:
                importlib.invalidate_caches()
                self.status = "Installed."
                self.done = True
                return True
            self._steps.pop(0)()
        except Exception as err:  # noqa: BLE001 - shown to the user with pip's output, never swallowed
            self.error = err
            self.status = f"Installation failed: {err}"
            self.done = True
        return self.done

    def cancel(self) -> None:
        if self._pip is not None:
            self._pip.cancel()
        self.cancelled = True
        self.error = RuntimeError("installation cancelled")
        self.status = "Installation cancelled."
        self.done = True

    def _torch(self) -> None:
        self.status = "Installing torch (PyTorch extension)..."
        installTorch(self.plan.torch)

    def _main(self) -> None:
        names = ", ".join(str(r) for r in self.plan.main)
        if self.usePipEnsure:
            import slicer.packaging

            self.status = f"Installing {names}..."
            slicer.packaging.pip_ensure([str(r) for r in self.plan.main], prompt_install=False, requester="LesaNet")
            return
        self._what = names
        self._pip = PipProcess([str(r) for r in self.plan.main], self.python)

    def _private(self) -> None:
        folder = workerPackagesPath()
        folder.mkdir(parents=True, exist_ok=True)
        self._what = f"{', '.join(str(r) for r in self.plan.private)} for the worker"
        self._pip = PipProcess(privateInstallArguments(self.plan.private, folder), self.python)

    def _privateDependencies(self) -> None:
        folder = workerPackagesPath()
        missing = missingDependenciesOf(folder, installedVersions())
        if missing:
            self._what = f"{', '.join(str(r) for r in missing)} for the worker"
            self._pip = PipProcess(privateInstallArguments(missing, folder), self.python)
