"""The Slicer edge of LesaNet: MRML <-> core adapters, the results panel, the worker thread, dependencies.

Modules:
    paths: finds LesaNetCore and Resources/ in an installed extension or a source checkout.
    geometry: volume node -> ``Volume``, ROI node -> box (8 world corners through parent transforms).
    logic: ``LesaNetSlicerLogic`` (annotate, store results in the scene, export); usable without the GUI.
    tables: the results table node (term, class, score, threshold, decision, accepted).
    export: SR / JSON / Markdown by suffix, default folders, DICOM database import.
    parameters: the typed parameter node (``slicer.parameterNodeWrapper`` when present).
    worker: one persistent inference thread and its jobs.
    qtcompat: ``QtWidgets``, ``QtCore``, ``QtGui`` from PythonQt inside Slicer, Qt.py outside.
    panel: the results panel (label rows with score bars, similar-lesion gallery, export buttons).
    controller: wires logic, worker and panel (what the module widget and the GUI tests drive).
    dependencies: checks and installs LesaNetCore's requirements on first use, after asking.

Nothing here imports torch, Qt or slicer at import time except where a module's purpose is Qt (panel,
controller, qtcompat), so the module loads and explains itself when dependencies are missing.
"""
