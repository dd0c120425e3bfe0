"""The wire between the module (in Slicer's process) and its inference worker process.

A local stream socket (a Unix socket in a private folder where the platform has them, else loopback TCP)
carries frames: an 8-byte big-endian length, then a pickled ``dict``. Pickle is safe here because both ends are
this project's code and the worker proves it was started by this Slicer session: its first frame carries the
random token the module handed it in its environment; a connection without it is dropped. Checkpoints, which
may come from anyone, are never unpickled this way (the core loads them with ``weights_only``).

Messages (``type``):
    hello (worker -> module): ``token``, ``pid``, ``python``.
    request (module -> worker): ``id``, ``kind`` and the kind's fields (see ``workerserver``).
    cancel (module -> worker): ``id``.
    progress (worker -> module): ``id``, ``text``.
    result (worker -> module): ``id``, ``value``.
    error (worker -> module): ``id``, ``message``, ``traceback``, ``kind`` ("input" for a LesaNetError, the user's
        to fix; "error" otherwise).
    cancelled (worker -> module): ``id``.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import tempfile

_HEADER = struct.Struct("!Q")
MAX_FRAME = 1 << 31
TOKEN_ENV = "LESANET_WORKER_TOKEN"
ADDRESS_ENV = "LESANET_WORKER_ADDRESS"
PATH_ENV = "LESANET_WORKER_PATH"


def encode(message: dict) -> bytes:
    """One frame."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Collects bytes as they arrive and returns the complete messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ValueError(f"frame length: must be at most {MAX_FRAME} bytes, but got {length}")
            if len(self._buffer) < _HEADER.size + length:
                break
            payload = bytes(self._buffer[_HEADER.size:_HEADER.size + length])
            del self._buffer[:_HEADER.size + length]
            messages.append(pickle.loads(payload))
        return messages


def listen() -> tuple[socket.socket, str, str | None]:
    """A non-blocking listening socket; returns it, its address for ``connect`` and its private folder."""
    if hasattr(socket, "AF_UNIX") and os.name != "nt":
        folder = tempfile.mkdtemp(prefix="lesanet-worker-")  # mode 0700: only this user reaches the socket
        path = os.path.join(folder, "socket")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        address = f"unix:{path}"
    else:
        folder = None
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        address = f"tcp:127.0.0.1:{server.getsockname()[1]}"
    server.listen(1)
    server.setblocking(False)
    return server, address, folder


def connect(address: str) -> socket.socket:
    """The worker's side of ``listen``."""
    kind, _, rest = address.partition(":")
    if kind == "unix":
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(rest)
    elif kind == "tcp":
        host, _, port = rest.rpartition(":")
        client = socket.create_connection((host, int(port)))
    else:
        raise ValueError(f"address: must start with 'unix:' or 'tcp:', but got {address!r}")
    return client


def sendAll(sock: socket.socket, message: dict) -> None:
    """Sends one message, blocking until it is written (messages are small: volumes travel as files)."""
    blocking = sock.getblocking()
    sock.setblocking(True)
    try:
        sock.sendall(encode(message))
    finally:
        sock.setblocking(blocking)
