"""The module's files against Slicer's conventions: syntax for old releases, the .ui, the template's layout, the
requirements, dependency planning and installing, CMake packaging, and the extension index entry."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import slicer_bootstrap as sb

MODULE_DIR = sb.MODULE_DIR
REPO_ROOT = sb.REPO_ROOT
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LesaNetSlicer.ui"
SHARED_SLICER = REPO_ROOT.parent / "shared" / "slicer"
INDEX = SHARED_SLICER / "ExtensionsIndex"


def test_module_file_parses_as_python_39():
    """Slicer 5.6 and 5.8 (Python 3.9) must be able to import the file to show what the module needs."""
    source = (MODULE_DIR / "LesaNetSlicer.py").read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.col_offset == 0}
    assert "LesaNetCore" not in "".join(m or "" for m in imported)  # the core is imported only when supported
    # Annotations are evaluated at run time (def statements, parameterNodeWrapper): Python 3.9 cannot evaluate
    # PEP 604 unions there (X | None), and this file has no ``from __future__ import annotations`` to defer them.
    annotations = [n.returns for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    annotations += [a.annotation for n in ast.walk(tree) if isinstance(n, ast.arg) for a in [n]]
    annotations += [n.annotation for n in ast.walk(tree) if isinstance(n, ast.AnnAssign)]
    unions = [ast.unparse(a) for a in annotations if a is not None and any(
        isinstance(b, ast.BinOp) and isinstance(b.op, ast.BitOr) for b in ast.walk(a))]
    assert not unions, unions
    assert not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)


def test_ui_defines_every_widget_the_module_uses():
    tree = ET.parse(UI_FILE)
    names = {w.get("name") for w in tree.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "LesaNetSlicer.py").read_text()))
    assert used and used <= names, sorted(used - names)
    classes = {w.get("name"): w.get("class") for w in tree.iter("widget")}
    assert classes["lesionSelector"] == "qMRMLNodeComboBox" and classes["shortAxisSelector"] == "qMRMLNodeComboBox"
    bound = {w.get("name"): p.findtext("string") for w in tree.iter("widget") for p in w.findall("property")
             if p.get("name") == "SlicerParameterName"}
    source = (MODULE_DIR / "LesaNetSlicer.py").read_text()
    parameters = set(re.findall(r"^        (\w+): ", source.split("class LesaNetSlicerParameterNode")[1]
                                .split("_LogicBase")[0], re.M))
    assert set(bound.values()) <= parameters, sorted(set(bound.values()) - parameters)
    # Every MRML selector gets the scene through the .ui's connections, as the template asks.
    receivers = {c.findtext("receiver") for c in tree.iter("connection")}
    assert {n for n, c in classes.items() if c == "qMRMLNodeComboBox"} <= receivers


def test_module_resources_follow_the_template():
    from PIL import Image

    for relative in ("Resources/Icons/LesaNetSlicer.png", "Resources/UI/LesaNetSlicer.ui",
                     "Resources/requirements.txt"):
        assert (MODULE_DIR / relative).is_file(), relative
    with Image.open(MODULE_DIR / "Resources/Icons/LesaNetSlicer.png") as icon:
        assert icon.size == (128, 128)
    assert not (REPO_ROOT / "Resources" / "UI").exists() and not (REPO_ROOT / "Resources" / "Icons").exists()


def test_worker_requirements_are_the_cores():
    """Resources/requirements.txt is the part of pyproject.toml's dependencies the worker needs, same versions."""
    tomllib = pytest.importorskip("tomllib")
    from LesaNetSlicerLib import dependencies
    from packaging.requirements import Requirement

    core = {dependencies.canonical(Requirement(r).name): Requirement(r).specifier
            for r in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    worker = dependencies.loadRequirements()
    assert {dependencies.canonical(r.name) for r in worker} >= {"torch", "pydicom", "highdicom", "numpy"}
    for requirement in worker:
        assert core.get(dependencies.canonical(requirement.name)) == requirement.specifier, requirement


def _requirements(*texts):
    from packaging.requirements import Requirement

    return [Requirement(t) for t in texts]


def test_plan_keeps_what_slicer_bundles_and_isolates_conflicts():
    from LesaNetSlicerLib import dependencies

    requirements = _requirements("torch>=2.1,<3", "numpy>=1.24", "tqdm>=4.60", "pydicom>=3.0", "highdicom>=0.22")
    # Slicer 5.10: numpy bundled and new enough, pydicom 2.4.4 bundled and imported, no highdicom, no torch.
    plan = dependencies.plan(requirements, {"numpy": "2.2.6", "pydicom": "2.4.4"}, {}, {"numpy", "pydicom"})
    assert str(plan.torch) == "torch<3,>=2.1"
    assert [r.name for r in plan.main] == ["tqdm"]
    assert [r.name for r in plan.private] == ["pydicom", "highdicom"]
    assert "pydicom>=3.0 (found 2.4.4, imported by Slicer)" in plan.describe()
    # Slicer 5.12: pydicom 3.0.2 and highdicom 0.27 bundled: nothing to do for them.
    plan = dependencies.plan(requirements, {"numpy": "2.2.6", "pydicom": "3.0.2", "highdicom": "0.27.0",
                                            "torch": "2.13.0", "tqdm": "4.67.1"}, {}, {"pydicom"})
    assert plan.empty and "All of" in plan.describe()
    # Once the private folder holds them, versions are compared there first.
    plan = dependencies.plan(requirements, {"numpy": "2.2.6", "pydicom": "2.4.4", "torch": "2.13.0",
                                            "tqdm": "4.67.1"}, {"pydicom": "3.0.2", "highdicom": "0.28.2"},
                             {"pydicom"})
    assert plan.empty
    # A newer highdicom is needed but only the private pydicom is there: highdicom goes beside it.
    plan = dependencies.plan(requirements, {"numpy": "2.2.6", "pydicom": "2.4.4", "torch": "2.13.0",
                                            "tqdm": "4.67.1"}, {"pydicom": "3.0.2"}, set())
    assert [r.name for r in plan.private] == ["highdicom"] and not plan.main
    # An old torch goes to the PyTorch extension, never to pip or the private folder.
    plan = dependencies.plan(_requirements("torch>=2.1,<3"), {"torch": "1.13.1"}, {}, {"torch"})
    assert plan.torch is not None and not plan.private and not plan.main


@pytest.mark.slow
def test_private_install_runs_pip_for_the_worker_only(tmp_path, monkeypatch):
    """The install task with real pip: --target into the private folder, then what those packages need."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the test wheels offline")
    from LesaNetSlicerLib import dependencies

    sb.tinyWheel(tmp_path, "lesanetprobe", "3.1", ["lesanetprobehelper>=1.0"])
    wheels = sb.tinyWheel(tmp_path, "lesanetprobehelper", "1.2", [])
    target = tmp_path / "private"
    monkeypatch.setenv(dependencies.PACKAGES_ENV, str(target))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    plan = dependencies.InstallPlan(private=_requirements("lesanetprobe>=3"))
    task = dependencies.InstallTask(plan, python=sys.executable, usePipEnsure=False)
    statuses = set()
    while not task.step():
        statuses.add(task.status.split(":")[0])
    assert task.error is None, (task.error, task.details)
    assert {"Installing lesanetprobe>=3 for the worker", "Installing lesanetprobehelper>=1.0 for the worker"} \
        <= statuses
    assert dependencies.installedVersions([str(target)]) == {"lesanetprobe": "3.1", "lesanetprobehelper": "1.2"}
    assert dependencies.workerPath() == [str(target)]
    assert importlib.util.find_spec("lesanetprobe") is None  # not in this (Slicer's) environment

    failing = dependencies.InstallTask(dependencies.InstallPlan(private=_requirements("lesanetprobe>=9")),
                                       python=sys.executable, usePipEnsure=False)
    while not failing.step():
        pass
    assert "pip could not install lesanetprobe>=9" in str(failing.error) and "lesanetprobe" in failing.details


def test_cmake_lists_every_module_script_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    block = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", text, re.S).group(1)
    listed = {line.strip().replace("${MODULE_NAME}", "LesaNetSlicer") for line in block.split() if line.strip()}
    present = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert listed == present
    block = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", text, re.S).group(1)
    listed = {line.strip().replace("${MODULE_NAME}", "LesaNetSlicer") for line in block.split() if line.strip()}
    present = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert listed == present


_STUB = """
cmake_minimum_required(VERSION 3.16)
project(LesaNetPackagingCheck NONE)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
set(BUILD_TESTING OFF)
# Same path rules as Slicer's macro (through CTK's ctkMacroCompilePythonScript): sources relative to the
# module folder must exist; each lands at the same relative path in qt-scripted-modules.
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(f ${MY_SCRIPTS} ${MY_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${f})
      message(FATAL_ERROR "nonexistent ${f}")
    endif()
    get_filename_component(d ${f} DIRECTORY)
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${f} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${d})
  endforeach()
endmacro()
add_subdirectory("@MODULE_DIR@" LesaNetSlicer)
"""


@pytest.mark.slow
def test_cmake_install_tree_carries_the_core_and_the_resources(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    source = tmp_path / "src"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(_STUB.replace("@MODULE_DIR@", MODULE_DIR.as_posix()))
    build, prefix = tmp_path / "build", tmp_path / "install"
    for command in ([cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}"],
                    [cmake, "--build", str(build)], [cmake, "--install", str(build)]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    root = prefix / "lib/Slicer-5.12/qt-scripted-modules"
    core = REPO_ROOT / "LesaNetCore"
    expected = [p.relative_to(REPO_ROOT) for p in core.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
                and (p.suffix == ".py" or "data" in p.relative_to(core).parts[:1])]
    missing = [str(p) for p in expected if not (root / p).is_file()]
    assert not missing, missing[:5]
    for relative in ("LesaNetSlicer.py", "LesaNetSlicerLib/workerserver.py", "Resources/UI/LesaNetSlicer.ui",
                     "Resources/Icons/LesaNetSlicer.png", "Resources/requirements.txt",
                     "LesaNetCore/data/ontology/default_ontology.json", "LesaNetCore/data/demo/model.pt"):
        assert (root / relative).is_file(), relative
    # The installed layout finds the core next to the module, and the worker's packages there too.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from LesaNetSlicerLib import paths; "
             "paths.ensureCoreImportable(); print(paths.coreRoot())")
    done = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0 and Path(done.stdout.strip()) in (root, REPO_ROOT), done.stderr


def _indexChecks():
    """The extension index's own validator module, loaded in place (its network steps are not called)."""
    script = INDEX / "scripts" / "check_description_files.py"
    if not script.is_file():
        pytest.skip(f"the extension index's validators are not present at {script} (../shared/slicer)")
    source = script.read_text()
    if sys.version_info < (3, 12):
        # Its print_categories (not a check) uses a 3.12 f-string; the checks themselves run on 3.10+.
        start, end = source.index("def print_categories"), source.index("def main(")
        source = source[:start] + source[end:]
    module = types.ModuleType("check_description_files")
    module.__file__ = str(script)
    exec(compile(source, str(script), "exec"), module.__dict__)
    return module


def test_index_entry_passes_the_schema_and_the_offline_checks(monkeypatch):
    jsonschema = pytest.importorskip("jsonschema")
    checks = _indexChecks()
    entry = REPO_ROOT / "LesaNetSlicer.json"
    name = entry.stem
    metadata = checks.parse_json(str(entry))
    schema_name = metadata["$schema"].split("/")[-1].split("#")[0]
    schema = json.loads((INDEX / "schemas" / schema_name).read_text())
    jsonschema.validate(metadata, schema)
    checks.check_json_file_format(name, metadata, str(entry))
    checks.check_extension_name(name, metadata)
    checks.check_category(name, metadata)
    checks.check_git_repository_name(name, metadata)
    checks.check_scm_url_syntax(name, metadata)
    checks.check_license_file(name, metadata, str(REPO_ROOT))

    def imageInRepository(url, kind, extensionName, checkName):
        # Offline stand-in for the download: the raw URL's path names a PNG of this repository.
        path = REPO_ROOT / url.split("/main/", 1)[1]
        if path.suffix != ".png" or not path.is_file():
            raise checks.ExtensionCheckError(extensionName, checkName, f"{kind} {url}: no such image {path}")

    monkeypatch.setattr(checks, "validate_image_url", imageInRepository)
    checks.check_cmakelists_content(name, metadata, str(REPO_ROOT))  # project() is the entry's name
    assert metadata["build_dependencies"] == ["PyTorch"] and (INDEX / "PyTorch.json").is_file()
    s4ext = (REPO_ROOT / "LesaNetSlicer.s4ext").read_text()
    assert f"scmurl {metadata['scm_url']}" in s4ext and "depends PyTorch" in s4ext
