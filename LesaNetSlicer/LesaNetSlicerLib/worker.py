"""One persistent inference thread, so Slicer's main thread keeps drawing while the model runs.

PyTorch keeps per-thread state (the thread-local inference mode, CUDA streams and cuDNN handles, the autograd
engine's workers); a thread per request would rebuild it every time, so every job runs on the same thread,
created on first use and kept until ``shutdown``. The main thread never blocks: it polls ``Job.done`` (the
controller does so from a QTimer) and reads the result or the error with its traceback.

A running forward pass cannot be interrupted; cancelling a job marks it so that a queued job never starts and
a running job's result is dropped when it arrives.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class Job:
    """One unit of work and what became of it (read from the main thread)."""

    _ids = itertools.count(1)

    def __init__(self, function: Callable[..., Any], args: tuple, kwargs: dict, description: str) -> None:
        self.id = next(self._ids)
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.description = description
        self.status = QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self.traceback = ""
        self.started = 0.0
        self.finished = 0.0
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        """True once the job finished, failed or was cancelled."""
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    @property
    def seconds(self) -> float:
        """Run time so far (or in total once done)."""
        if not self.started:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    def cancel(self) -> None:
        """Drops the job: a queued job never runs; a running job's result is discarded."""
        if not self.done:
            self.status = CANCELLED
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until done (for scripts and tests; the GUI polls instead)."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        if self.cancelled:
            return
        self.status = RUNNING
        self.started = time.perf_counter()
        try:
            result = self.function(*self.args, **self.kwargs)
        except BaseException as err:  # noqa: BLE001 - every failure is reported to the main thread, never lost
            self.finished = time.perf_counter()
            if not self.cancelled:
                self.error = err
                self.traceback = traceback.format_exc()
                self.status = FAILED
            self._done.set()
            return
        self.finished = time.perf_counter()
        if not self.cancelled:
            self.result = result
            self.status = DONE
        self._done.set()


class InferenceWorker:
    """A single daemon thread that runs submitted jobs one after another."""

    def __init__(self, name: str = "LesaNetInference") -> None:
        self.name = name
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def thread(self) -> threading.Thread | None:
        """The worker thread (None before the first job)."""
        return self._thread

    def submit(self, function: Callable[..., Any], *args: Any, description: str = "", **kwargs: Any) -> Job:
        """Queues ``function(*args, **kwargs)`` on the worker thread and returns its Job at once."""
        job = Job(function, args, kwargs, description or getattr(function, "__name__", "job"))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def run(self, function: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Runs ``function`` on the worker thread and waits for it (for scripts: same thread as the GUI's jobs).

        Raises:
            the job's own exception, or TimeoutError.
        """
        job = self.submit(function, *args, **kwargs)
        if not job.wait(timeout):
            job.cancel()
            raise TimeoutError(f"job {job.description!r}: did not finish within {timeout} s")
        if job.error is not None:
            raise job.error
        return job.result

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stops the thread after the jobs already queued."""
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job._run()
