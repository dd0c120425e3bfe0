"""MRML nodes -> the core's conventions: a volume node becomes a ``Volume`` (LPS), an ROI node becomes a box.

Slicer's world is RAS; the core's is LPS (``Volume`` docstring). The conversion happens here and only here:
the volume's IJK-to-RAS matrix (with its parent transform, which must be linear) becomes a ``Volume`` through
``Volume.from_ijk_to_ras``; the ROI's eight corners are taken in world RAS through its own orientation and its
parent transforms (linear or not), flipped to LPS and mapped into the volume's IJK with the same ``Volume``, so
the box and the voxels always share one geometry. Taking the min/max over all eight corners *after* mapping to
IJK is what keeps flipped or permuted axes from swapping the box's corners.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from LesaNetCore.errors import LesaNetError, invalid
from LesaNetCore.imaging import Volume

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RoiBox:
    """An ROI expressed for ``Annotator.annotate``.

    Attributes:
        kwargs: ``{"box_ijk": (i1, j1, i2, j2, k)}`` for a volume stored as axial slices (the box snaps to the
            key slice k, the slice under the ROI centre), else ``{"box_lps": (x1, y1, x2, y2, z)}``.
        cornersLps: the ROI's eight corners in world LPS millimetres (8 x 3).
        cornersIjk: the same corners as continuous volume indices (8 x 3, ordered i, j, k).
        keySlice: K of the ROI centre, rounded.
    """

    kwargs: dict[str, tuple[float, ...]]
    cornersLps: np.ndarray
    cornersIjk: np.ndarray
    keySlice: int


def vtkMatrixToArray(matrix: Any) -> np.ndarray:
    """A vtkMatrix4x4 as a 4x4 float64 array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def ijkToWorldRasMatrix(volumeNode: Any) -> np.ndarray:
    """The volume's IJK-to-RAS matrix composed with its parent transforms (which must be linear).

    Raises:
        LesaNetError: the volume sits under a non-linear transform (harden it first; voxels cannot follow a warp).
    """
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    ijkToRas = vtkMatrixToArray(matrix)
    parent = volumeNode.GetParentTransformNode()
    if parent is None:
        return ijkToRas
    if not parent.IsTransformToWorldLinear():
        raise invalid(f"volume {volumeNode.GetName()!r}",
                      "must be under a linear transform (harden the non-linear transform first)",
                      parent.GetName())
    toWorld = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(toWorld)
    return vtkMatrixToArray(toWorld) @ ijkToRas


def volumeFromNode(volumeNode: Any, sliceFiles: tuple[str, ...] | None = None) -> Volume:
    """Converts a scalar volume node to a core ``Volume`` (float32 voxels, LPS world geometry).

    Args:
        volumeNode: a ``vtkMRMLScalarVolumeNode`` with image data.
        sliceFiles: the DICOM file of each K slice, when the volume came from DICOM (see ``dicomSliceFiles``).

    Raises:
        LesaNetError: no node, no image data, more than one component per voxel, or a non-linear transform.
    """
    if volumeNode is None:
        raise invalid("volume", "must be a scalar volume node", None)
    imageData = volumeNode.GetImageData()
    if imageData is None:
        raise invalid(f"volume {volumeNode.GetName()!r}", "must hold image data", None)
    if imageData.GetNumberOfScalarComponents() != 1:
        raise invalid(f"volume {volumeNode.GetName()!r}", "must hold one value per voxel (a scalar volume)",
                      f"{imageData.GetNumberOfScalarComponents()} components")
    from vtk.util import numpy_support

    dims = imageData.GetDimensions()  # (I, J, K)
    scalars = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars())
    voxels = np.asarray(scalars, dtype=np.float32).reshape(dims[2], dims[1], dims[0])
    volume = Volume.from_ijk_to_ras(voxels, ijkToWorldRasMatrix(volumeNode), source=volumeNode.GetName())
    if sliceFiles is None:
        return volume
    return Volume(volume.voxels, volume.spacing, volume.origin, volume.direction, volume.source, tuple(sliceFiles))


def roiCornersWorldRas(roiNode: Any) -> np.ndarray:
    """The eight corners (8 x 3) of an ROI in world RAS: its own orientation, then every parent transform.

    Raises:
        LesaNetError: no ROI, or an ROI with no extent yet (placement not finished).
    """
    if roiNode is None:
        raise invalid("roi", "must be a markups ROI node (draw a box first)", None)
    size = [float(v) for v in roiNode.GetSize()]
    if not all(np.isfinite(size)) or sorted(size)[1] <= 0:
        raise invalid(f"roi {roiNode.GetName()!r}", "must have a positive width and height (finish drawing it)",
                      tuple(size))
    objectToNode = vtkMatrixToArray(roiNode.GetObjectToNodeMatrix())
    half = np.asarray(size, dtype=np.float64) / 2.0
    corners = np.array([[sx * half[0], sy * half[1], sz * half[2], 1.0]
                        for sx, sy, sz in itertools.product((-1, 1), repeat=3)])
    cornersNode = (corners @ objectToNode.T)[:, :3]
    parent = roiNode.GetParentTransformNode()
    if parent is None:
        return cornersNode
    import vtk

    toWorld = vtk.vtkGeneralTransform()  # linear or not: every corner is mapped on its own
    parent.GetTransformToWorld(toWorld)
    return np.array([toWorld.TransformPoint([float(v) for v in p]) for p in cornersNode], dtype=np.float64)


def boxFromCorners(volume: Volume, cornersRas: np.ndarray) -> RoiBox:
    """The annotation box of eight world-RAS corners on ``volume``.

    For a volume stored as axial slices (its K axis closest to z) the box is given in IJK on the key slice,
    which snaps the patch centre onto the slice the user drew on; otherwise in LPS at the ROI centre's height.
    Corners are clipped to the volume so a box drawn slightly past the edge still works.

    Raises:
        LesaNetError: the ROI does not overlap the volume.
    """
    cornersLps = np.asarray(cornersRas, dtype=np.float64) * _RAS_TO_LPS
    cornersIjk = volume.lps_to_ijk(cornersLps)
    centreLps = cornersLps.mean(axis=0)
    centreK = float(volume.lps_to_ijk(centreLps)[2])
    sizeI, sizeJ, sizeK = volume.size_ijk
    keySlice = int(np.round(centreK))
    low, high = cornersIjk.min(axis=0), cornersIjk.max(axis=0)
    limits = np.array([sizeI - 1, sizeJ - 1, sizeK - 1], dtype=np.float64)
    if (high < 0).any() or (low > limits).any() or not 0 <= keySlice <= sizeK - 1:
        raise invalid("roi", f"must overlap the volume (index ranges {np.round(low, 1).tolist()} .. "
                      f"{np.round(high, 1).tolist()}, volume size (I, J, K) = {volume.size_ijk})",
                      np.round(cornersRas, 2).tolist())
    axialAxis = int(np.argmax(np.abs(volume.direction[2, :])))
    if axialAxis == 2:
        i1, j1 = np.clip(low[:2], 0, limits[:2])
        i2, j2 = np.clip(high[:2], 0, limits[:2])
        kwargs = {"box_ijk": (float(i1), float(j1), float(i2), float(j2), float(keySlice))}
    else:
        lowLps = volume.ijk_to_lps(np.clip(cornersIjk, 0, limits))
        x1, y1 = lowLps[:, 0].min(), lowLps[:, 1].min()
        x2, y2 = lowLps[:, 0].max(), lowLps[:, 1].max()
        kwargs = {"box_lps": (float(x1), float(y1), float(x2), float(y2), float(centreLps[2]))}
    return RoiBox(kwargs=kwargs, cornersLps=cornersLps, cornersIjk=cornersIjk, keySlice=keySlice)


def boxFromRoi(volume: Volume, roiNode: Any) -> RoiBox:
    """``boxFromCorners`` of the ROI node's world corners."""
    return boxFromCorners(volume, roiCornersWorldRas(roiNode))


def dicomSliceFiles(volumeNode: Any, database: Any = None) -> tuple[str, ...] | None:
    """The DICOM file of each K slice of a volume loaded from DICOM, or None.

    Slicer records the instance UIDs of a DICOM-loaded volume in the ``DICOM.instanceUIDs`` attribute; the
    files come from Slicer's DICOM database and are ordered by their position along the volume's K axis, so
    the SR can point each box at its key slice's image. Anything missing or inconsistent gives None (the SR then
    uses 3D coordinates; see ``LesaNetCore.report.sr``).
    """
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids or database is None:
        return None
    files = [database.fileForInstance(uid) for uid in uids]
    if not all(files):
        return None
    try:
        import pydicom

        matrix = ijkToWorldRasMatrix(volumeNode)
        normal = matrix[:3, 2] * _RAS_TO_LPS
        positions = []
        for name in files:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
            positions.append(float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal)))
    except (ImportError, OSError, AttributeError, ValueError):
        return None
    dims = volumeNode.GetImageData().GetDimensions()
    if len(files) != dims[2]:
        return None
    order = np.argsort(positions)
    return tuple(str(files[n]) for n in order)


def requireSameScene(*nodes: Any) -> None:
    """Rejects nodes from different scenes (a stale selection after a scene switch)."""
    scenes = {id(n.GetScene()) for n in nodes if n is not None}
    if len(scenes) > 1:
        raise LesaNetError("volume/roi: must belong to the same MRML scene, but got nodes from "
                           f"{len(scenes)} scenes")
