"""The module's side of the inference worker: one persistent process, driven by polling from the main thread.

Why a process: PythonQt does not enable its GIL thread support, so while Slicer's main thread idles in the Qt
event loop it keeps the GIL and a Python worker thread only runs when Python runs on the main thread. A
process has its own interpreter: the model runs at full speed and a crash there cannot take Slicer down.

The main thread never blocks on the worker: ``poll()`` accepts the worker's connection, sends what is queued,
reads what has arrived and notices a dead process, all without waiting; the GUI calls it from a QTimer and
scripts through ``wait()``. Requests are ``Request`` objects whose status, progress text, result or error the
caller reads. ``cancel()`` asks the worker to drop a request and kills the process when it does not answer
within ``cancelGrace`` seconds (a forward pass or a model load cannot be interrupted from inside). A worker
that dies is reported on every request it held (with the end of its log) and started anew by the next request.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import workerprotocol as protocol

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
MODULE_DIR = Path(__file__).resolve().parents[1]


class WorkerError(Exception):
    """A request that did not give a result.

    Attributes:
        kind: ``"input"`` (the core rejected the input: the user's to fix), ``"error"`` (an exception in the
            worker), ``"crash"`` (the process died), ``"cancelled"`` or ``"timeout"``.
        details: the worker's traceback or the end of its log.
    """

    def __init__(self, message: str, kind: str = "error", details: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


class Request:
    """One request to the worker and what became of it."""

    _ids = itertools.count(1)

    def __init__(self, kind: str, payload: dict) -> None:
        self.id = next(self._ids)
        self.kind = kind
        self.payload = payload
        self.status = QUEUED
        self.progress = ""
        self.progressHistory: list[str] = []  # every progress text in order (the last is ``progress``)
        self.result: Any = None
        self.error: WorkerError | None = None
        self.cancelRequested = 0.0

    @property
    def done(self) -> bool:
        return self.status in (DONE, FAILED, CANCELLED)

    def _finish(self, status: str, result: Any = None, error: WorkerError | None = None) -> None:
        if not self.done:
            self.status, self.result, self.error = status, result, error


def defaultPython() -> str:
    """Slicer's own interpreter for scripts (``PythonSlicer``) inside Slicer, else this interpreter."""
    try:
        import slicer

        inSlicer = getattr(slicer, "app", None) is not None
    except ImportError:
        inSlicer = False
    if inSlicer:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


class WorkerProcess:
    """See the module docstring.

    Args:
        python: the interpreter to start (default ``defaultPython()``).
        pythonPath: folders put first on the worker's ``sys.path`` (the core's root, worker-only packages).
        cancelGrace: seconds a cancelled request may take to answer before the process is killed.
        startTimeout: seconds the process may take to connect.
        environment: extra environment variables for the process.
    """

    def __init__(self, python: str | None = None, pythonPath: Sequence[str | os.PathLike] = (),
                 cancelGrace: float = 2.0, startTimeout: float = 120.0,
                 environment: dict[str, str] | None = None) -> None:
        self.python = python
        self.pythonPath = [str(p) for p in pythonPath]
        self.cancelGrace = cancelGrace
        self.startTimeout = startTimeout
        self.environment = dict(environment or {})
        self.generation = 0
        self.logPath: Path | None = None
        self.info: dict = {}
        self.address = ""
        self._process: subprocess.Popen | None = None
        self._listener = None
        self._folder: str | None = None
        self._connection = None
        self._reader = protocol.FrameReader()
        self._candidates: list = []
        self._token = ""
        self._started = 0.0
        self._outgoing: list[dict] = []
        self._pending: dict[int, Request] = {}
        self._log = None

    # ------------------------------------------------------------------------------------------- process
    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Starts the process unless it runs (returns at once; the connection is made by ``poll``)."""
        if self.alive:
            return
        self._close()
        self._removeLog()
        self._listener, self.address, self._folder = protocol.listen()
        self._token = secrets.token_hex(16)
        environment = dict(os.environ)
        environment.update(self.environment)
        environment[protocol.ADDRESS_ENV] = self.address
        environment[protocol.TOKEN_ENV] = self._token
        environment[protocol.PATH_ENV] = os.pathsep.join([*self.pythonPath, str(MODULE_DIR)])
        # -m needs the package on the path before the worker can put the rest there itself.
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(MODULE_DIR), *[p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]])
        self.logPath = Path(tempfile.mkstemp(prefix="lesanet-worker-", suffix=".log")[1])
        self._log = open(self.logPath, "wb")  # noqa: SIM115 - kept open for the process's life
        self._process = subprocess.Popen(
            [self.python or defaultPython(), "-u", "-m", "LesaNetSlicerLib.workerserver"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=environment,
            cwd=str(MODULE_DIR))
        self._started = time.perf_counter()
        self.generation += 1

    def kill(self) -> None:
        """Ends the process at once (what Cancel falls back to)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Asks the process to exit, kills it when it does not, and fails what was still pending."""
        if self.alive and self.connected:
            try:
                protocol.sendAll(self._connection, {"type": "request", "id": 0, "kind": "shutdown"})
                self._process.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self._failPending(WorkerError("the worker was shut down", "cancelled"))
        self._close()
        self._removeLog()

    def _removeLog(self) -> None:
        if self.logPath is not None:
            try:
                self.logPath.unlink()
            except OSError:
                pass
            self.logPath = None

    def _close(self) -> None:
        for item in (self._connection, self._listener, *[c[0] for c in self._candidates]):
            if item is not None:
                try:
                    item.close()
                except OSError:
                    pass
        self._connection = self._listener = None
        self._candidates = []
        self._reader = protocol.FrameReader()
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def logTail(self, lines: int = 30) -> str:
        """The last lines the process printed (for error details)."""
        if self.logPath is None or not self.logPath.exists():
            return ""
        return "\n".join(self.logPath.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------------------------------ requests
    def submit(self, kind: str, **payload: Any) -> Request:
        """Queues a request (starting the process when needed) and returns it at once."""
        self.start()
        request = Request(kind, payload)
        self._pending[request.id] = request
        self._outgoing.append({"type": "request", "id": request.id, "kind": kind, **payload})
        self.poll()
        return request

    def cancel(self, request: Request) -> None:
        """Drops a request: a queued one never runs; a running one is killed with the process if need be."""
        if request.done:
            return
        if request.status == QUEUED and not self.connected:
            self._outgoing = [m for m in self._outgoing if m.get("id") != request.id]
            self._pending.pop(request.id, None)
            request._finish(CANCELLED, error=WorkerError("cancelled", "cancelled"))
            return
        request.cancelRequested = time.perf_counter()
        self._outgoing.append({"type": "cancel", "id": request.id})
        self.poll()

    def wait(self, request: Request, timeout: float | None = None) -> Any:
        """Polls until ``request`` is done (scripts); returns its result or raises its WorkerError."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not request.done:
            self.poll()
            if request.done:
                break
            if deadline is not None and time.perf_counter() > deadline:
                self.cancel(request)
                raise WorkerError(f"{request.kind}: no answer within {timeout} s", "timeout", self.logTail())
            time.sleep(0.002)
        if request.error is not None:
            raise request.error
        return request.result

    def run(self, kind: str, timeout: float | None = None, **payload: Any) -> Any:
        """``submit`` and ``wait``."""
        return self.wait(self.submit(kind, **payload), timeout)

    # ---------------------------------------------------------------------------------------------- poll
    def poll(self) -> None:
        """Moves everything along without blocking; call it often from the main thread."""
        if self._process is None:
            return
        if not self.connected:
            self._accept()
        if self.connected:
            self._send()
            self._receive()
        self._checkCancelled()
        self._checkProcess()

    def _accept(self) -> None:
        """Accepts connections and waits, without blocking, for the one whose first frame has the token."""
        while True:
            try:
                connection, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return
            connection.setblocking(False)
            self._candidates.append((connection, protocol.FrameReader(), time.perf_counter()))
        for candidate in list(self._candidates):
            connection, reader, accepted = candidate
            messages: list[dict] = []
            try:
                chunk = connection.recv(65536)
                messages = reader.feed(chunk) if chunk else []
                closed = not chunk
            except (BlockingIOError, InterruptedError):
                closed = False
            except (OSError, ValueError):
                closed = True
            hello = messages[0] if messages else None
            genuine = (hello is not None and hello.get("type") == "hello"
                       and secrets.compare_digest(str(hello.get("token", "")), self._token))
            if genuine:
                self._candidates.remove(candidate)
                self._connection, self._reader = connection, reader
                self.info = {"pid": hello.get("pid"), "python": hello.get("python"),
                             "startSeconds": time.perf_counter() - self._started}
                self._dispatch(messages[1:])
                break
            if closed or hello is not None or time.perf_counter() - accepted > 10.0:
                self._candidates.remove(candidate)  # not ours: wrong token, or silent
                connection.close()
        if not self.connected and time.perf_counter() - self._started > self.startTimeout and self.alive:
            self.kill()

    def _send(self) -> None:
        while self._outgoing:
            message = self._outgoing.pop(0)
            try:
                protocol.sendAll(self._connection, message)
            except OSError:
                self._outgoing.insert(0, message)
                return
            request = self._pending.get(message["id"])
            if request is not None and message["type"] == "request" and request.status == QUEUED:
                request.status = RUNNING

    def _receive(self) -> None:
        while True:
            try:
                chunk = self._connection.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                return  # closed: _checkProcess reports the exit
            self._dispatch(self._reader.feed(chunk))

    def _dispatch(self, messages: list[dict]) -> None:
        for message in messages:
            request = self._pending.get(message.get("id"))
            if request is None:
                continue
            kind = message["type"]
            if kind == "progress":
                request.progress = message["text"]
                request.progressHistory.append(message["text"])
                continue
            del self._pending[request.id]
            if kind == "result":
                request._finish(DONE, result=message["value"])
            elif kind == "cancelled":
                request._finish(CANCELLED, error=WorkerError("cancelled", "cancelled"))
            else:
                request._finish(FAILED, error=WorkerError(message["message"], message.get("kind", "error"),
                                                          message.get("traceback", "")))

    def _checkCancelled(self) -> None:
        now = time.perf_counter()
        if any(r.cancelRequested and now - r.cancelRequested > self.cancelGrace for r in self._pending.values()):
            self.kill()  # _checkProcess fails the others as a crash; the cancelled ones as cancelled

    def _checkProcess(self) -> None:
        if self._process is None or self._process.poll() is None:
            return
        code = self._process.returncode
        self._process = None
        if self.connected:
            self._receive()  # what it sent before it exited
        tail = self.logTail()
        self._failPending(WorkerError(f"the inference worker stopped (exit code {code}); it restarts with the "
                                      "next request", "crash", tail))
        self._outgoing = []
        self._close()

    def _failPending(self, error: WorkerError) -> None:
        for request in list(self._pending.values()):
            if request.cancelRequested:
                request._finish(CANCELLED, error=WorkerError("cancelled", "cancelled", error.details))
            else:
                request._finish(FAILED, error=error)
        self._pending.clear()
