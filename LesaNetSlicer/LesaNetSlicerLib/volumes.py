"""Sending a volume node's voxels to the worker process: once per node and modification, a slab at a time.

The voxels cross as a NumPy ``.npy`` file in a private temporary folder, in their stored type (int16 for most
CTs: half the bytes of float32), copied straight from the node's VTK array (a view, no copy in Slicer's
memory). A 512 x 512 x 400 CT is 200 MB: copying it in one go would freeze the main thread for about a
second, so ``VolumeUpload.step`` copies slices for at most ``budget`` seconds per call and the GUI calls it
from its timer. The worker loads the file into its own float32 copy and the module deletes the file.

A node's identity for the worker is ``volumeKey``: its ID, the modification times of its image data and
scalars, and its world geometry; editing the voxels or moving the volume gives a new key and a new upload.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import geometry


def voxelArray(volumeNode: Any) -> np.ndarray:
    """The node's voxels as a (K, J, I) view of its VTK scalars (no copy)."""
    from vtk.util import numpy_support

    imageData = volumeNode.GetImageData()
    dims = imageData.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars())
    return scalars.reshape(dims[2], dims[1], dims[0])


def volumeKey(volumeNode: Any) -> tuple:
    """What identifies the node's voxels and geometry (see the module docstring)."""
    imageData = volumeNode.GetImageData()
    scalars = imageData.GetPointData().GetScalars() if imageData is not None else None
    matrix = geometry.ijkToWorldRasMatrix(volumeNode)
    return (volumeNode.GetID(), imageData.GetMTime() if imageData is not None else 0,
            scalars.GetMTime() if scalars is not None else 0, tuple(np.round(matrix, 9).ravel().tolist()))


class VolumeUpload:
    """Copies one node's voxels into a ``.npy`` file, a few slices per ``step``.

    Args:
        volumeNode: the scalar volume node.
        folder: where the file goes (the logic's private temporary folder).
        dicomFiles: the series' files when the volume came from DICOM (the worker orders them).
    """

    def __init__(self, volumeNode: Any, folder: Path, dicomFiles: tuple[str, ...] | None = None) -> None:
        self.node = volumeNode
        self.key = volumeKey(volumeNode)
        self.geometry = geometry.geometryFromNode(volumeNode)
        self.dicomFiles = dicomFiles
        self.normal = geometry.sliceNormalLps(volumeNode) if dicomFiles else None
        self.path = Path(folder) / f"volume-{abs(hash(self.key)):x}-{time.monotonic_ns()}.npy"
        self._source = voxelArray(volumeNode)
        self._target = np.lib.format.open_memmap(self.path, mode="w+", dtype=self._source.dtype,
                                                 shape=self._source.shape)
        self._next = 0
        self.done = False

    @property
    def fraction(self) -> float:
        return self._next / max(1, self._source.shape[0])

    def step(self, budget: float = 0.015) -> bool:
        """Copies slices for about ``budget`` seconds; True once the file is complete.

        Raises:
            LesaNetError: the node's voxels or geometry changed meanwhile (start a new upload).
        """
        if self.done:
            return True
        from LesaNetCore.errors import invalid

        if volumeKey(self.node) != self.key:
            self.discard()
            raise invalid(f"volume {self.node.GetName()!r}", "must not change while it is sent to the worker",
                          "modified")
        end = time.perf_counter() + budget
        slices = self._source.shape[0]
        while self._next < slices:
            stop = min(slices, self._next + 8)
            self._target[self._next:stop] = self._source[self._next:stop]
            self._next = stop
            if time.perf_counter() > end:
                break
        if self._next >= slices:
            self._target.flush()
            self._target = self._source = None
            self.done = True
        return self.done

    def request(self) -> dict:
        """The worker's ``loadVolume`` fields."""
        g = self.geometry
        return {"key": self.key, "path": str(self.path), "spacing": g.spacing, "origin": g.origin,
                "direction": g.direction.tolist(), "source": g.source, "dicomFiles": self.dicomFiles,
                "normal": self.normal}

    def discard(self) -> None:
        """Drops the file (after the worker loaded it, or when the upload is abandoned)."""
        self._target = self._source = None
        try:
            os.remove(self.path)
        except OSError:
            pass
