"""Keeps freed activation memory inside the process on glibc, so CPU inference and training do not page-fault it
back in.

A VGG16 forward pass over 8 patches allocates and frees ~30 MB feature maps per layer. glibc hands such blocks
back to the kernel (they are above its adaptive mmap threshold, or trimmed off the top of the heap), and every
new map then page-faults in zeroed 4 KiB pages again: ~58,000 minor faults per 32 patches, measured, about 4 %
of the forward time on the project's 2-core machine. Fixing both thresholds keeps those blocks in the heap for
reuse (:func:`keep_freed_memory`, what batched inference needs). Training at batch 32 allocates blocks above the
largest mmap threshold glibc accepts (32 MiB: a conv1 feature map or its gradient is 118 MB), so it also needs
mmap turned off (:func:`keep_large_blocks`). The cost is that up to ``trim_threshold`` bytes of freed memory stay
reserved by the process, and, with large blocks kept, memory returns to the system only from the top of the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_applied: set[str] = set()


def _mallopt() -> Any:
    """glibc's ``mallopt`` (Linux), or None where it is missing or a no-op (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # gnu_get_libc_version exists in glibc only: musl has mallopt as a no-op stub.
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Asks glibc's allocator to serve blocks up to ``mmap_threshold`` from the heap and keep freed memory.

    Returns True when the settings are in force (glibc Linux), False elsewhere (macOS, Windows, musl), where it
    changes nothing. Calling it again is free. 32 MiB is the largest mmap threshold glibc accepts on 64-bit.
    """
    if "heap" in _applied:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)):
        _applied.add("heap")
    return "heap" in _applied


def keep_large_blocks() -> bool:
    """:func:`keep_freed_memory`, and blocks of any size from the heap too (no mmap), for CPU training.

    Measured on the 2-core AMD EPYC, full-size LesaNet at batch 32: 229,615 minor page faults and about 0.7 s of
    kernel time per training step without it, 1 with it; the step went from 108 to 94 ms per patch (medians of 6).
    The heap grows over the first steps (glibc cannot always fit an aligned block into the hole a freed one of the
    same size left) and then stays at the process's peak. Returns False where glibc's allocator is not in use.
    """
    if "large" in _applied:
        return True
    mallopt = _mallopt()
    if mallopt is None or not keep_freed_memory():
        return False
    if mallopt(_M_MMAP_MAX, 0):
        _applied.add("large")
    return "large" in _applied
