"""MRML nodes -> the core's conventions: a volume node's grid, and the lesion (an ROI or RECIST lines) as a box.

Slicer's world is RAS; the core's is LPS. The conversion happens here and only here: the volume's IJK-to-RAS
matrix (with its parent transform, which must be linear) becomes a :class:`VolumeGeometry`; the ROI's eight
corners, or a line's two end points, are taken in world RAS through the node's own orientation and its parent
transforms (linear or not), flipped to LPS and mapped onto the volume's grid, so the box and the voxels always
share one geometry. Taking the min/max over all eight corners *after* mapping to IJK is what keeps flipped or
permuted axes from swapping the box's corners.

None of this reads voxels: the grid is enough to place the box, and the voxels go to the worker process once
per volume (``volumes``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from LesaNetCore.errors import LesaNetError, invalid
from LesaNetCore.imaging.geometry import VolumeGeometry
from LesaNetCore.imaging.recist import recist_from_lps

RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])
ROI_CLASS = "vtkMRMLMarkupsROINode"
LINE_CLASS = "vtkMRMLMarkupsLineNode"


@dataclass(frozen=True)
class LesionInput:
    """The lesion as ``Annotator.annotate`` takes it.

    Attributes:
        kwargs: ``{"box_ijk": (i1, j1, i2, j2, k)}`` for a volume stored as axial slices (the box snaps to the
            key slice), ``{"box_lps": (x1, y1, x2, y2, z)}`` otherwise, or ``{"recist": Recist}`` for RECIST lines.
        keySlice: K of the lesion's centre, rounded.
        description: which input made the box, for the panel ("ROI 'Lesion'", "RECIST line 'Long axis' ...").
    """

    kwargs: dict[str, Any]
    keySlice: int
    description: str


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


def geometryFromNode(volumeNode: Any) -> VolumeGeometry:
    """The grid of a scalar volume node in world LPS (through its parent transforms).

    Raises:
        LesaNetError: no node, no image data, more than one component per voxel, or a non-linear transform.
    """
    if volumeNode is None:
        raise invalid("volume", "must be a scalar volume node (select one)", None)
    imageData = volumeNode.GetImageData()
    if imageData is None or min(imageData.GetDimensions()) < 1:
        raise invalid(f"volume {volumeNode.GetName()!r}", "must hold image data", None)
    if imageData.GetNumberOfScalarComponents() != 1:
        raise invalid(f"volume {volumeNode.GetName()!r}", "must hold one value per voxel (a scalar volume)",
                      f"{imageData.GetNumberOfScalarComponents()} components")
    return VolumeGeometry.from_ijk_to_ras(imageData.GetDimensions(), ijkToWorldRasMatrix(volumeNode),
                                          source=volumeNode.GetName())


def roiCornersWorldRas(roiNode: Any) -> np.ndarray:
    """The eight corners (8 x 3) of an ROI in world RAS: its own orientation, then every parent transform.

    Raises:
        LesaNetError: an ROI with no extent yet (placement not finished).
    """
    size = [float(v) for v in roiNode.GetSize()]
    if not all(np.isfinite(size)) or sorted(size)[1] <= 0:
        raise invalid(f"roi {roiNode.GetName()!r}", "must have a positive width and height (finish drawing it)",
                      tuple(size))
    objectToNode = vtkMatrixToArray(roiNode.GetObjectToNodeMatrix())
    half = np.asarray(size, dtype=np.float64) / 2.0
    corners = np.array([[sx * half[0], sy * half[1], sz * half[2], 1.0]
                        for sx, sy, sz in itertools.product((-1, 1), repeat=3)])
    return _toWorld(roiNode, (corners @ objectToNode.T)[:, :3])


def lineEndPointsWorldRas(lineNode: Any) -> np.ndarray:
    """A markups line's two end points (2 x 3) in world RAS.

    Raises:
        LesaNetError: the line does not have both points placed yet.
    """
    defined = [i for i in range(lineNode.GetNumberOfControlPoints())
               if lineNode.GetNthControlPointPositionStatus(i) == lineNode.PositionDefined]
    if len(defined) < 2:
        raise invalid(f"line {lineNode.GetName()!r}", "must have both end points placed (finish drawing it)",
                      f"{len(defined)} placed")
    points = np.zeros((2, 3))
    for row, index in enumerate(defined[:2]):
        lineNode.GetNthControlPointPositionWorld(index, points[row])
    return points


def _toWorld(node: Any, pointsNode: np.ndarray) -> np.ndarray:
    parent = node.GetParentTransformNode()
    if parent is None:
        return pointsNode
    import vtk

    toWorld = vtk.vtkGeneralTransform()  # linear or not: every point is mapped on its own
    parent.GetTransformToWorld(toWorld)
    return np.array([toWorld.TransformPoint([float(v) for v in p]) for p in pointsNode], dtype=np.float64)


def boxFromCorners(geometry: VolumeGeometry, cornersRas: np.ndarray, name: str = "roi") -> LesionInput:
    """The annotation box of eight world-RAS corners on ``geometry``.

    For a volume stored as axial slices (its K axis closest to z) the box is given in IJK on the key slice,
    which snaps the patch centre onto the slice the user drew on; otherwise in LPS at the ROI centre's height.
    Corners are clipped to the volume so a box drawn slightly past the edge still works.

    Raises:
        LesaNetError: the ROI does not overlap the volume.
    """
    cornersLps = np.asarray(cornersRas, dtype=np.float64) * RAS_TO_LPS
    cornersIjk = geometry.lps_to_ijk(cornersLps)
    centreLps = cornersLps.mean(axis=0)
    sizeI, sizeJ, sizeK = geometry.size_ijk
    keySlice = int(np.round(geometry.lps_to_ijk(centreLps)[2]))
    low, high = cornersIjk.min(axis=0), cornersIjk.max(axis=0)
    limits = np.array([sizeI - 1, sizeJ - 1, sizeK - 1], dtype=np.float64)
    if (high < 0).any() or (low > limits).any() or not 0 <= keySlice <= sizeK - 1:
        raise invalid("roi", f"must overlap the volume (index ranges {np.round(low, 1).tolist()} .. "
                      f"{np.round(high, 1).tolist()}, volume size (I, J, K) = {geometry.size_ijk})",
                      np.round(cornersRas, 2).tolist())
    if geometry.is_axial:
        i1, j1 = np.clip(low[:2], 0, limits[:2])
        i2, j2 = np.clip(high[:2], 0, limits[:2])
        kwargs = {"box_ijk": (float(i1), float(j1), float(i2), float(j2), float(keySlice))}
    else:
        lowLps = geometry.ijk_to_lps(np.clip(cornersIjk, 0, limits))
        x1, y1 = lowLps[:, 0].min(), lowLps[:, 1].min()
        x2, y2 = lowLps[:, 0].max(), lowLps[:, 1].max()
        kwargs = {"box_lps": (float(x1), float(y1), float(x2), float(y2), float(centreLps[2]))}
    return LesionInput(kwargs, keySlice, f"box {name!r}")


def recistFromLines(geometry: VolumeGeometry, longAxis: Any, shortAxis: Any = None) -> LesionInput:
    """A RECIST measurement from a long-axis line (and an optional short-axis line) on the volume's grid.

    The box is DeepLesion's (the diameters' tight box padded by 5 pixels, see ``LesaNetCore.imaging.recist``).

    Raises:
        LesaNetError: a line not finished, lines on different slices, a short axis longer than the long one.
    """
    points = [lineEndPointsWorldRas(longAxis)]
    if shortAxis is not None:
        points.append(lineEndPointsWorldRas(shortAxis))
    lps = np.concatenate(points) * RAS_TO_LPS
    names = f"{longAxis.GetName()!r}" + (f" and {shortAxis.GetName()!r}" if shortAxis is not None else "")
    recist = recist_from_lps(f"RECIST line {names}", geometry, lps)
    size_i, size_j, size_k = geometry.size_ijk
    box = recist.box_ijk(padding=0.0)
    if not 0 <= recist.key_slice < size_k or box[2] < 0 or box[3] < 0 or box[0] > size_i - 1 or box[1] > size_j - 1:
        raise invalid(f"RECIST line {names}", f"must lie on the volume (size (I, J, K) = {geometry.size_ijk})",
                      np.round(points[0], 2).tolist())
    axes = "long and short axis" if shortAxis is not None else "long axis"
    return LesionInput({"recist": recist}, recist.key_slice, f"RECIST {axes} {names}")


def lesionInput(geometry: VolumeGeometry, lesionNode: Any, shortAxisNode: Any = None) -> LesionInput:
    """The lesion from an ROI node or a line node (RECIST long axis, with ``shortAxisNode`` if given)."""
    if lesionNode is None:
        raise invalid("lesion", "must be a markups ROI or line node (draw a box or measure the lesion first)",
                      None)
    if lesionNode.IsA(ROI_CLASS):
        return boxFromCorners(geometry, roiCornersWorldRas(lesionNode), lesionNode.GetName())
    if lesionNode.IsA(LINE_CLASS):
        return recistFromLines(geometry, lesionNode, shortAxisNode)
    raise invalid("lesion", "must be a markups ROI or line node", lesionNode.GetClassName())


def dicomSeriesFiles(volumeNode: Any, database: Any) -> tuple[str, ...] | None:
    """The DICOM files of a volume loaded from DICOM (any order), or None.

    Slicer records the instance UIDs of a DICOM-loaded volume in ``DICOM.instanceUIDs``; the files come from
    Slicer's DICOM database. Reading their positions (to order them) is the worker's job, off the main thread.
    """
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids or database is None:
        return None
    files = [database.fileForInstance(uid) for uid in uids]
    return tuple(str(f) for f in files) if all(files) else None


def sliceNormalLps(volumeNode: Any) -> list[float]:
    """The volume's K axis in world LPS (orders DICOM files along the volume)."""
    return (ijkToWorldRasMatrix(volumeNode)[:3, 2] * RAS_TO_LPS).tolist()


def requireSameScene(*nodes: Any) -> None:
    """Rejects nodes from different scenes (a stale selection after a scene switch)."""
    scenes = {id(n.GetScene()) for n in nodes if n is not None}
    if len(scenes) > 1:
        raise LesaNetError("volume/lesion: must belong to the same MRML scene, but got nodes from "
                           f"{len(scenes)} scenes")
