"""On a Slicer older than 5.10 the module loads and says what it needs, and nothing raises.

The application reports an older version over the real Python layer of 5.10.0 (the oldest one here): the module
file is what an old Slicer imports, and the test checks that it then stays away from the core (which needs
Python 3.10, while Slicer 5.6 and 5.8 ship 3.9) and from everything that would fail there.
"""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import slicerlayer  # noqa: E402

MODULE_FILE = slicerlayer.REPO_ROOT / "LesaNetSlicer" / "LesaNetSlicer.py"


@pytest.mark.parametrize(("reported", "python", "needs"), [
    ((5, 8, 1), None, "needs 3D Slicer 5.10 or later; this is Slicer 5.8"),
    ((5, 6, 2), (3, 9, 10, "final", 0), "needs 3D Slicer 5.10 or later; this is Slicer 5.6 (Python 3.9)"),
    ((5, 10, 0), (3, 9, 10, "final", 0), "needs Python 3.10 or later; this Slicer has Python 3.9"),
])
def test_an_old_slicer_gets_a_message_not_an_error(monkeypatch, reported, python, needs):
    reason = slicerlayer.unavailable("5.10.0")
    if reason:
        pytest.skip(reason)
    layer = slicerlayer.SlicerLayer.load("5.10.0", reported=reported)
    try:
        if python is not None:
            monkeypatch.setattr(sys, "version_info", _VersionInfo(python))
        layer.loadModule(MODULE_FILE)
        monkeypatch.undo()
        widget = layer.widget("LesaNetSlicer")
        import qt

        labels = [w.text for w in widget.parent.findChildren(qt.QLabel)]
        assert any(needs in text for text in labels), labels
        assert not any(name.startswith("LesaNetSlicerLib") for name in sys.modules)  # (purged at load)
        widget.enter()
        widget.exit()
        widget.cleanup()
    finally:
        monkeypatch.undo()
        layer.unload()


class _VersionInfo(tuple):
    """``sys.version_info`` of another Python (only what the module reads)."""

    def __new__(cls, values):
        return super().__new__(cls, values)

    major = property(lambda self: self[0])
    minor = property(lambda self: self[1])
