"""The module file, parameters, dependency install, resources and the CMake packaging, outside Slicer."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
import slicer_bootstrap as sb

MODULE_DIR = sb.MODULE_DIR
UI_FILE = sb.REPO_ROOT / "Resources" / "UI" / "LesaNetSlicer.ui"


def test_module_file_imports_without_the_application():
    if sb.slicerCoreAvailable():
        pytest.skip(str(sb.slicerCoreAvailable()))
    import LesaNetSlicer

    assert not LesaNetSlicer.IN_SLICER
    parent = SimpleNamespace()
    LesaNetSlicer.LesaNetSlicer(parent)
    assert parent.title == "LesaNet" and "Annotate" in parent.helpText
    assert LesaNetSlicer.LesaNetSlicerLogic.__name__ == "LesaNetSlicerLogic"


def test_ui_defines_every_widget_the_module_uses():
    tree = ET.parse(UI_FILE)
    names = {w.get("name") for w in tree.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "LesaNetSlicer.py").read_text()))
    assert used and used <= names, sorted(used - names)
    classes = {w.get("name"): w.get("class") for w in tree.iter("widget")}
    assert classes["modelPathLineEdit"] == "ctkPathLineEdit" and classes["roiSelector"] == "qMRMLNodeComboBox"
    assert classes["advancedCollapsibleButton"] == "ctkCollapsibleButton"


def test_resources_are_found_in_the_source_layout():
    from LesaNetSlicerLib import paths

    assert paths.resourcePath("UI/LesaNetSlicer.ui") == UI_FILE
    from PIL import Image

    with Image.open(paths.resourcePath("Icons/LesaNetSlicer.png")) as icon:
        assert icon.size == (128, 128)
    with pytest.raises(FileNotFoundError, match="nothing.ui"):
        paths.resourcePath("UI/nothing.ui")


def test_fallback_parameters_round_trip():
    if sb.slicerCoreAvailable():
        pytest.skip(str(sb.slicerCoreAvailable()))
    import numpy as np
    from LesaNetSlicerLib.logic import AnnotationSettings
    from LesaNetSlicerLib.parameters import FallbackParameters, settings

    app = sb.bootstrap()
    node = app.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    params = FallbackParameters(node)
    assert params.topK == 5 and params.retrieval is True and params.inputVolume is None
    volume = sb.addVolume(app.scene, np.zeros((2, 3, 4), np.float32), np.eye(4), "p")
    params.inputVolume = volume
    params.topK = 3
    params.retrieval = False
    params.thresholdOffset = -0.1
    params.modelPath = "/models/x.pt"
    again = FallbackParameters(node)
    assert again.inputVolume.GetID() == volume.GetID() and again.topK == 3 and again.retrieval is False
    assert settings(again) == AnnotationSettings(modelPath="/models/x.pt", retrieval=False, thresholdOffset=-0.1,
                                                 topK=3)
    with pytest.raises(AttributeError, match="must be one of"):
        params.colour = "red"


def test_dependencies_install_after_asking():
    from LesaNetSlicerLib import dependencies

    installed = {"numpy", "SimpleITK", "pydicom", "faiss", "openpyxl", "tqdm"}

    def finder(name):
        return object() if name in installed else None

    assert dependencies.missingDependencies(finder) == ["torch", "highdicom"]
    calls = []
    refused = dependencies.ensureDependencies(confirm=lambda text: calls.append(text) or False,
                                              pipInstall=calls.append, torchInstaller=calls.append, finder=finder)
    assert refused is False and len(calls) == 1 and "torch" in calls[0] and "highdicom" in calls[0]

    def install(requirement):
        calls.append(requirement)
        installed.update({"torch"} if requirement.startswith("torch") else {"highdicom"})

    calls.clear()
    assert dependencies.ensureDependencies(confirm=lambda text: True, pipInstall=install, torchInstaller=install,
                                           finder=finder)
    assert calls == [dependencies.REQUIREMENTS["torch"], dependencies.REQUIREMENTS["highdicom"]]
    # Nothing missing: no question, no install.
    assert dependencies.ensureDependencies(confirm=lambda text: pytest.fail("asked"), pipInstall=pytest.fail,
                                           finder=finder)


def test_cmake_lists_every_module_script():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    block = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", text, re.S).group(1)
    listed = {line.strip().replace("${MODULE_NAME}", "LesaNetSlicer") for line in block.split() if line.strip()}
    present = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert listed == present


_STUB = """
cmake_minimum_required(VERSION 3.16)
project(LesaNetPackagingCheck NONE)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
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
def test_cmake_install_tree_carries_core_data_and_resources(tmp_path):
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
    root = prefix / "lib/Slicer-5.8/qt-scripted-modules"
    core = sb.REPO_ROOT / "LesaNetCore"
    expected = [p.relative_to(sb.REPO_ROOT) for p in core.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
                and (p.suffix == ".py" or "data" in p.relative_to(core).parts[:1])]
    missing = [str(p) for p in expected if not (root / p).is_file()]
    assert not missing, missing[:5]
    for relative in ("LesaNetSlicer.py", "LesaNetSlicerLib/panel.py", "Resources/UI/LesaNetSlicer.ui",
                     "Resources/Icons/LesaNetSlicer.png", "Resources/Screenshots/panel.png",
                     "LesaNetCore/data/ontology/default_ontology.json"):
        assert (root / relative).is_file(), relative
    # The installed layout finds its resources next to the module.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from LesaNetSlicerLib import paths; "
             "print(paths.resourcePath('UI/LesaNetSlicer.ui'))")
    done = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == str(root / "Resources/UI/LesaNetSlicer.ui"), done.stderr
