"""``QtWidgets``, ``QtCore`` and ``QtGui`` for the panel, from whichever Qt binding is running.

Inside Slicer the binding is PythonQt, whose single ``qt`` module holds every class (``qt.QLabel``,
``qt.QTimer``, ``qt.QPixmap``); Qt.py does not know PythonQt. Outside Slicer (tests, screenshots) Qt.py
chooses PySide6. The panel is written once against the names both offer: classes through
``QtWidgets``/``QtCore``/``QtGui``, method calls (``setText``), new-style signals (``clicked.connect``), enums
spelled ``QtCore.Qt.AlignLeft``. ``BINDING`` says which one was picked.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _pythonqt():
    if os.environ.get("LESANET_QT_BINDING", "").lower() == "qt.py":
        return None
    qt = sys.modules.get("qt")  # PythonQt's, already imported inside Slicer (find_spec fails on a spec-less one)
    if qt is None:
        if importlib.util.find_spec("qt") is None:
            return None
        import qt
    if not hasattr(qt, "QWidget"):
        return None
    return qt


_qt = _pythonqt()
if _qt is not None:
    QtWidgets = QtCore = QtGui = _qt
    BINDING = "PythonQt"
else:
    os.environ.setdefault("QT_PREFERRED_BINDING", "PySide6")
    from Qt import QtCore, QtGui, QtWidgets  # noqa: F401  (Qt.py)

    BINDING = "Qt.py"


def pixmapFromGrey(image) -> object:
    """A QPixmap of a uint8 grey image (H x W), through the PGM format every Qt build reads.

    Going through encoded bytes avoids handing a raw buffer pointer to QImage, which PythonQt cannot do.
    """
    import numpy as np

    grey = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if grey.ndim != 2:
        raise ValueError(f"image: must be a 2D grey image, but got shape {grey.shape}")
    header = b"P5\n%d %d\n255\n" % (grey.shape[1], grey.shape[0])
    pixmap = QtGui.QPixmap()
    pixmap.loadFromData(QtCore.QByteArray(header + grey.tobytes()), "PGM")
    return pixmap
