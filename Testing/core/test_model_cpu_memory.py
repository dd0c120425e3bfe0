"""glibc allocator settings for CPU inference: freed feature maps are reused, not page-faulted in again."""

from __future__ import annotations

import resource
import sys

import numpy as np
import pytest

from LesaNetCore.model.cpu_memory import keep_freed_memory


def _faults_of_four_fresh_24mb_blocks() -> int:
    """Minor page faults while four 24 MB blocks (like one layer's feature maps) are filled and freed."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.empty(24 << 20, dtype=np.uint8) for _ in range(4)]
    for block in blocks:
        block.fill(1)  # touch every page
    del blocks, block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings apply on Linux only")
def test_freed_blocks_are_reused_without_page_faults():
    if not keep_freed_memory():
        pytest.skip("not glibc: mallopt is unavailable, the setting is a no-op here")
    assert keep_freed_memory()  # idempotent
    _faults_of_four_fresh_24mb_blocks()  # the first round may grow the heap
    # Without the setting glibc trims part of the freed heap and the next round faults ~2,000 of its 24,576 pages
    # in again (measured); with it, none.
    assert _faults_of_four_fresh_24mb_blocks() < 200


_LARGE_BLOCKS = """
import resource, sys, torch
from LesaNetCore.model.cpu_memory import keep_freed_memory, keep_large_blocks
print(keep_large_blocks() if sys.argv[1] == "large" else keep_freed_memory())
def faults():  # a training step's pattern: several maps above 32 MiB alive at once, then freed together
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.empty(48 << 20, dtype=torch.uint8) for _ in range(3)]
    for block in blocks:
        block.fill_(1)
    del blocks, block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(min(faults() for _ in range(8)))  # the heap grows in the first rounds, then is reused
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings apply on Linux only")
def test_blocks_above_the_mmap_threshold_are_reused_when_large_blocks_are_kept():
    """Training's 118 MB maps are above any mmap threshold: only turning mmap off keeps them for reuse.

    In fresh processes (what earlier tests left in this one's heap would blur it); torch's allocations, not
    numpy's, which asks for huge pages and faults far less often.
    """
    import subprocess

    def least_faults(setting: str) -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", _LARGE_BLOCKS, setting], capture_output=True, text=True,
                              timeout=120, check=True)
        applied, faults = done.stdout.split()
        return applied, int(faults)

    applied, faults_kept = least_faults("large")
    if applied != "True":
        pytest.skip("not glibc: mallopt is unavailable, the setting is a no-op here")
    _, faults_mmapped = least_faults("heap")
    assert faults_kept < 200  # reused from the heap
    assert faults_mmapped > 18000  # each fresh mmap faults its pages in again (measured: all 36,864 of them)
