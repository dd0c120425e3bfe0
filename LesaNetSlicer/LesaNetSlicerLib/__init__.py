"""The Slicer edge of LesaNet: MRML <-> core adapters, the worker process, the results panel, dependencies.

Modules:
    paths: finds LesaNetCore in an installed extension or a source checkout.
    geometry: volume node -> its grid (``VolumeGeometry``); ROI or RECIST lines -> the lesion box.
    volumes: a volume node's voxels to the worker, once per node and modification, a slab per timer tick.
    workerprotocol: the socket and message frames between the module and the worker.
    workerserver: the worker process (model, volumes, SR export); run with Slicer's own Python.
    worker: the module's side of the worker: start, requests, cancel, crash and restart, all by polling.
    logic: annotation and export tasks, results in the scene (table node, subject hierarchy), edits.
    tables: the results table node (rows and the stored JSON result), rebuilt after a scene is reopened.
    export: JSON / Markdown by suffix, default folders, DICOM database import.
    dependencies: the worker's packages: version checks, pip_ensure, a private folder for conflicts.
    qtcompat: ``QtWidgets``, ``QtCore``, ``QtGui`` from PythonQt inside Slicer, Qt.py outside.
    panel: the results panel (label rows with score bars, similar-lesion gallery, export buttons).
    controller: steps the running task from a timer and wires logic and panel (what the widget drives).

Nothing here imports torch, and nothing imports Qt except the modules whose purpose is Qt (qtcompat, panel,
controller), so the module loads and explains itself when packages are missing. This package needs Python 3.10+;
``LesaNetSlicer.py`` imports it only on a supported Slicer.
"""
