"""The in-Slicer check script runs its whole flow on Slicer's real Python layer (so it works when a person
with Slicer runs it), every step passing."""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import slicerlayer  # noqa: E402

SCRIPT = slicerlayer.REPO_ROOT / "Testing" / "slicermodule" / "in_slicer_check.py"


@pytest.mark.slow
def test_every_step_of_the_in_slicer_check_passes():
    reason = slicerlayer.unavailable("5.12.3")
    if reason:
        pytest.skip(reason)
    pytest.importorskip("torch")
    layer = slicerlayer.SlicerLayer.load("5.12.3")
    lines: list[str] = []
    try:
        layer.loadModule(slicerlayer.REPO_ROOT / "LesaNetSlicer" / "LesaNetSlicer.py")
        spec = importlib.util.spec_from_file_location("in_slicer_check", SCRIPT)
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        checks = script.Checks(echo=lines.append, timeout=300)
        ok = checks.run()
        if checks.widget is not None and checks.widget.logic is not None:
            checks.widget.logic.shutdown()
    finally:
        layer.unload()
    print("\n".join(lines))
    assert ok, "\n".join(lines)
    assert len([line for line in lines if line.startswith("PASS")]) == 15
