"""The inference worker process: holds the model and the volumes, answers the module's requests.

Started by ``worker.WorkerProcess`` with Slicer's own Python (``PythonSlicer``), as
``python -m LesaNetSlicerLib.workerserver``; the environment names the module's socket, the session token and
the folders to put first on ``sys.path`` (the core's root and the worker-only packages, see ``dependencies``).
It never imports slicer or Qt.

Requests (``kind`` and fields) run one at a time, in order:
    ping: -> ``{"pid", "python", "torch"}``.
    loadVolume: ``key``, ``path`` (a .npy of the voxels as (K, J, I)), ``spacing``, ``origin``, ``direction``
        (LPS), ``source``, ``dicomFiles`` (the series' files, any order, or None), ``normal`` (the K axis in LPS)
        -> ``{"key", "shape"}``. The two most recent volumes are kept.
    annotate: ``settings`` (``Annotator`` keyword arguments), ``volumeKey``, ``input`` (``{"box_ijk": ...}``,
        ``{"box_lps": ...}`` or ``{"recist": Recist}``) -> an ``AnnotationResult``.
    exportReport: ``results``, ``path`` (a DICOM SR: JSON and Markdown are written by the module itself),
        ``volumeKey``, ``overwrite`` -> the written path.
    shutdown: -> None, then the process exits.

A reader thread takes messages off the socket so that a ``cancel`` arrives while a request runs; the request
checks for it between its steps (a forward pass itself cannot be interrupted: the module kills the process
when a cancelled request does not answer in time). When the module's end of the socket closes, the worker
exits: it never outlives the Slicer session that started it.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import traceback
from collections import OrderedDict


class Cancelled(Exception):
    """The module cancelled the running request."""


class PanelNotes(logging.Handler):
    """Forwards the core's notes meant for a waiting user (log records with a ``panel`` text) as progress.

    The first annotation on a new computer measures its convolution kernels for a few seconds
    (``LesaNetCore.model.inference``); without this the panel would show "Annotating..." all that time and the
    note would only reach the worker's log file.
    """

    def __init__(self, server: InferenceServer) -> None:
        super().__init__(logging.INFO)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        text = getattr(record, "panel", None)
        if text and self.server.current is not None:
            self.server.send({"type": "progress", "id": self.server.current, "text": str(text)})


class InferenceServer:
    """The request loop; see the module docstring."""

    def __init__(self, sock) -> None:
        from .workerprotocol import FrameReader

        self.sock = sock
        self.reader = FrameReader()
        self.requests: queue.Queue = queue.Queue()
        self.cancelled: set[int] = set()
        self.sendLock = threading.Lock()
        self.volumes: OrderedDict = OrderedDict()
        self.annotator = None
        self.annotatorSettings = None
        self.current: int | None = None
        self.notes = PanelNotes(self)  # on the "LesaNetCore" logger while serve() runs

    # ------------------------------------------------------------------------------------------------ wire
    def send(self, message: dict) -> None:
        from .workerprotocol import sendAll

        with self.sendLock:
            sendAll(self.sock, message)

    def progress(self, text: str) -> None:
        self.checkCancelled()
        self.send({"type": "progress", "id": self.current, "text": text})

    def checkCancelled(self) -> None:
        if self.current in self.cancelled:
            raise Cancelled()

    def _readLoop(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self.requests.put(None)
                return
            for message in self.reader.feed(data):
                if message.get("type") == "cancel":
                    self.cancelled.add(message["id"])
                else:
                    self.requests.put(message)

    def serve(self) -> None:
        threading.Thread(target=self._readLoop, name="LesaNetWorkerReader", daemon=True).start()
        core = logging.getLogger("LesaNetCore")
        core.setLevel(min(core.getEffectiveLevel(), logging.INFO))
        core.addHandler(self.notes)
        try:
            self._serveRequests()
        finally:
            core.removeHandler(self.notes)

    def _serveRequests(self) -> None:
        while True:
            message = self.requests.get()
            if message is None:
                return
            self.current = message["id"]
            try:
                if self.current in self.cancelled:
                    raise Cancelled()
                value = getattr(self, f"_{message['kind']}")(message)
                self.send({"type": "result", "id": self.current, "value": value})
            except Cancelled:
                self.send({"type": "cancelled", "id": self.current})
            except BaseException as err:  # noqa: BLE001 - every failure goes back to the module, with its traceback
                from LesaNetCore.errors import LesaNetError

                self.send({"type": "error", "id": self.current, "message": str(err) or type(err).__name__,
                           "kind": "input" if isinstance(err, LesaNetError) else "error",
                           "traceback": traceback.format_exc()})
            finally:
                self.cancelled.discard(self.current)
            if message["kind"] == "shutdown":
                return

    # -------------------------------------------------------------------------------------------- requests
    def _ping(self, message: dict) -> dict:
        try:
            import torch

            torchVersion = torch.__version__
        except ImportError:
            torchVersion = None
        return {"pid": os.getpid(), "python": sys.version.split()[0], "torch": torchVersion}

    def _shutdown(self, message: dict) -> None:
        return None

    def _loadVolume(self, message: dict) -> dict:
        import numpy as np

        from LesaNetCore.imaging import Volume

        voxels = np.load(message["path"], mmap_mode="r")
        files = orderSliceFiles(message.get("dicomFiles"), message.get("normal"), voxels.shape[0])
        volume = Volume(voxels, message["spacing"], message["origin"], np.asarray(message["direction"]),
                        message.get("source", ""), files)
        del voxels  # Volume holds its own float32 copy; the module may delete the file now
        self.volumes[message["key"]] = volume
        self.volumes.move_to_end(message["key"])
        while len(self.volumes) > 2:
            self.volumes.popitem(last=False)
        return {"key": message["key"], "shape": volume.shape, "dicom": files is not None}

    def _volume(self, key):
        from LesaNetCore.errors import invalid

        if key not in self.volumes:
            raise invalid("volume", "must have been sent to the worker before it is used", key)
        self.volumes.move_to_end(key)
        return self.volumes[key]

    def _annotate(self, message: dict):
        settings = message["settings"]
        if self.annotator is None or self.annotatorSettings != settings:
            self.progress("Loading the model...")
            from LesaNetCore.annotate import Annotator

            self.annotator = None
            self.annotator = Annotator(**settings)
            self.annotatorSettings = settings
        volume = self._volume(message["volumeKey"])
        self.progress("Annotating...")
        return self.annotator.annotate(volume, **message["input"])

    def _exportReport(self, message: dict) -> str:
        from pathlib import Path

        from LesaNetCore.report import write_dicom_sr

        path, overwrite, results = Path(message["path"]), bool(message["overwrite"]), message["results"]
        self.progress("Writing the structured report...")
        return str(write_dicom_sr(results, path, volume=self._volume(message["volumeKey"]), overwrite=overwrite))


def orderSliceFiles(files, normal, slices: int) -> tuple[str, ...] | None:
    """The DICOM file of each K slice, ordered by position along the volume's K axis (``normal``, LPS).

    Slicer records a DICOM-loaded volume's instance UIDs, not their order; the SR needs the file of the key
    slice. Anything missing or inconsistent gives None (the SR then uses 3D coordinates).
    """
    if not files or normal is None or len(files) != slices:
        return None
    try:
        import numpy as np
        import pydicom

        positions = []
        for name in files:
            dataset = pydicom.dcmread(name, stop_before_pixels=True)
            positions.append(float(np.dot(np.asarray(dataset.ImagePositionPatient, dtype=float), normal)))
    except (ImportError, OSError, AttributeError, ValueError, TypeError):
        return None
    order = sorted(range(len(files)), key=positions.__getitem__)
    return tuple(str(files[n]) for n in order)


def main() -> int:
    from .workerprotocol import ADDRESS_ENV, PATH_ENV, TOKEN_ENV, connect, sendAll

    for folder in reversed([p for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    sock = connect(os.environ[ADDRESS_ENV])
    sendAll(sock, {"type": "hello", "token": os.environ[TOKEN_ENV], "pid": os.getpid(),
                   "python": sys.version.split()[0]})
    InferenceServer(sock).serve()
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
