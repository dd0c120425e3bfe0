"""The inference worker process and the volume upload, outside any GUI: real processes, real sockets."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest
import slicer_bootstrap as sb

REPO_ROOT = sb.REPO_ROOT


@pytest.fixture
def worker():
    from LesaNetSlicerLib.worker import WorkerProcess

    process = WorkerProcess(python=sys.executable, pythonPath=[str(REPO_ROOT)], cancelGrace=1.0)
    yield process
    process.shutdown()


def test_frames_survive_any_split():
    from LesaNetSlicerLib import workerprotocol as protocol

    messages = [{"type": "result", "id": n, "value": np.arange(n * 100, dtype=np.float32)} for n in range(5)]
    data = b"".join(protocol.encode(m) for m in messages)
    reader = protocol.FrameReader()
    received = []
    for start in range(0, len(data), 7):
        received += reader.feed(data[start:start + 7])
    assert [m["id"] for m in received] == list(range(5))
    assert all(np.array_equal(a["value"], b["value"]) for a, b in zip(received, messages, strict=True))


def test_one_persistent_process_answers_in_order(worker):
    first = worker.run("ping", timeout=120)
    second = worker.run("ping", timeout=120)
    assert first["pid"] == second["pid"] == worker.pid != os.getpid()
    requests = [worker.submit("ping") for _ in range(3)]
    for request in requests:
        worker.wait(request, 60)
    assert all(r.status == "done" for r in requests) and worker.generation == 1


def test_errors_come_back_with_their_kind_and_traceback(worker, tmp_path):
    from LesaNetSlicerLib.worker import WorkerError

    with pytest.raises(WorkerError) as missing:
        worker.run("loadVolume", timeout=60, key="k", path=str(tmp_path / "none.npy"), spacing=(1, 1, 1),
                   origin=(0, 0, 0), direction=np.eye(3).tolist())
    assert missing.value.kind == "error" and "FileNotFoundError" in missing.value.details
    with pytest.raises(WorkerError) as unknown:
        worker.run("annotate", timeout=60, settings={}, volumeKey="nothing", input={})
    assert unknown.value.kind == "input" and "must have been sent to the worker" in str(unknown.value)
    assert worker.run("ping", timeout=60)["pid"] == worker.pid  # still alive


def test_a_crash_fails_pending_requests_and_the_next_request_restarts(worker):
    worker.run("ping", timeout=120)
    pid = worker.pid
    os.kill(pid, signal.SIGSTOP)
    request = worker.submit("ping")
    os.kill(pid, signal.SIGKILL)
    from LesaNetSlicerLib.worker import WorkerError

    with pytest.raises(WorkerError) as crashed:
        worker.wait(request, 30)
    assert crashed.value.kind == "crash" and "exit code" in str(crashed.value)
    assert worker.run("ping", timeout=120)["pid"] != pid and worker.generation == 2


def test_cancel_kills_a_worker_that_does_not_answer(worker):
    worker.run("ping", timeout=120)
    pid = worker.pid
    os.kill(pid, signal.SIGSTOP)  # stuck, as in a long model load
    request = worker.submit("ping")
    started = time.perf_counter()
    worker.cancel(request)
    while not request.done:
        worker.poll()
        time.sleep(0.01)
        assert time.perf_counter() - started < 20
    assert request.status == "cancelled" and not worker.alive
    assert 1.0 <= time.perf_counter() - started < 10  # the grace period, then the kill


def test_a_connection_without_the_token_is_refused(worker):
    from LesaNetSlicerLib import workerprotocol as protocol

    worker.start()
    silent = protocol.connect(worker.address)  # connects and says nothing: must not block the main thread
    started = time.perf_counter()
    worker.poll()
    assert time.perf_counter() - started < 0.5
    intruder = protocol.connect(worker.address)  # another local process finds the socket first
    protocol.sendAll(intruder, {"type": "hello", "token": "guess", "pid": 1, "python": "x"})
    assert worker.run("ping", timeout=120)["pid"] == worker.pid  # the real worker is the one served
    intruder.settimeout(5)
    try:
        assert intruder.recv(10) == b""  # dropped
    except (TimeoutError, ConnectionResetError):
        pass
    intruder.close()
    silent.close()


def test_the_worker_exits_when_slicer_goes(worker):
    worker.run("ping", timeout=120)
    process = worker._process
    worker._connection.close()  # what Slicer's exit (or crash) does to the socket
    assert process.wait(30) == 0


@pytest.mark.skipif(sb.slicerCoreAvailable() is not None, reason=str(sb.slicerCoreAvailable()))
def test_volume_upload_is_incremental_and_follows_modifications(tmp_path):
    from LesaNetSlicerLib.volumes import VolumeUpload, volumeKey

    from LesaNetCore.errors import LesaNetError

    app = sb.bootstrap()
    voxels = np.random.default_rng(0).integers(-1000, 2000, (40, 64, 48)).astype(np.int16)
    node = sb.addVolume(app.scene, voxels, np.diag([-0.8, -0.8, 2.5, 1.0]), "upload")
    upload = VolumeUpload(node, tmp_path)
    steps = 0
    while not upload.step(budget=0.0):  # the smallest step: 8 slices a call
        steps += 1
    assert steps == 4
    stored = np.load(upload.path)
    assert stored.dtype == np.int16 and np.array_equal(stored, voxels)
    assert upload.request()["spacing"] == pytest.approx((0.8, 0.8, 2.5))
    upload.discard()
    assert not upload.path.exists()

    key = volumeKey(node)
    again = VolumeUpload(node, tmp_path)
    again.step(budget=0.0)
    node.GetImageData().GetPointData().GetScalars().Modified()  # the user edits the voxels meanwhile
    with pytest.raises(LesaNetError, match="must not change while it is sent"):
        again.step()
    assert volumeKey(node) != key and not again.path.exists()


def test_the_first_annotation_on_a_new_computer_says_it_measures_kernels(tmp_path):
    """A fresh kernel cache makes the first annotation measure for a while: the panel's status line says so."""
    from LesaNetSlicerLib.logic import AnnotationSettings
    from LesaNetSlicerLib.worker import WorkerProcess

    from LesaNetCore.demo import demo_volume

    volume, lesions = demo_volume()
    np.save(tmp_path / "ct.npy", np.asarray(volume.voxels))
    environment = {"LESANET_CACHE_DIR": str(tmp_path / "new-computer-cache"), "LESANET_TUNE": "on"}
    process = WorkerProcess(python=sys.executable, pythonPath=[str(REPO_ROOT)], environment=environment)
    try:
        process.run("loadVolume", timeout=120, key="ct", path=str(tmp_path / "ct.npy"),
                    spacing=tuple(volume.spacing), origin=tuple(volume.origin), direction=np.asarray(volume.direction).tolist())
        settings = AnnotationSettings(device="cpu").annotatorArguments()
        histories = []
        for _ in range(2):
            request = process.submit("annotate", settings=settings, volumeKey="ct",
                                     input={"box_ijk": list(lesions[0].box_ijk)})
            result = process.wait(request, 300)
            assert result.labels
            histories.append(request.progressHistory)
    finally:
        process.shutdown()
    note = "Measuring the fastest convolution kernels for this computer (once, a few seconds)..."
    assert histories[0][-1] == note and "Annotating..." in histories[0]
    assert note not in histories[1]  # measured once, then cached
    assert (tmp_path / "new-computer-cache" / "kernels.json").is_file()
