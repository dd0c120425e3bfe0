"""An SR read back as lesions: labels, the reader's edits and review, and the box on the volume's grid.

So a review can stop and continue, an SR this project wrote comes back as what the reader decided: the accepted
labels (with the model's score of each, from the ``{probability}`` measurements), what the reader added and
removed (the edit comment), the review status and reader (the review comment), and the box. A TID 1500 SR from
another tool comes back too where its planar ROI carries a region (its qualitative evaluations of LesaNet's
class concepts and its finding sites become labels, the region's bounding box the box).

The box comes back in the volume's voxel indices when the volume is given (the SR's region lies on one of its
slices): image coordinates (SCOORD) through the source image's position, orientation and spacing, 3D points
(SCOORD3D) directly. The region's outline runs along voxel edges, as the writer draws it, so the inclusive box is
half a voxel inside it: ``read(write(box)) == box``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import invalid
from . import codes as C

_EDIT = re.compile(rf"^{re.escape(C.EDITED_PREFIX)}: added (?P<added>.*); removed (?P<removed>.*)\.$")
_REVIEW = re.compile(rf"^{re.escape(C.REVIEW_PREFIX)}: (?P<status>\w+)(?: by (?P<reader>.+))?$")


@dataclass(frozen=True)
class SrLesion:
    """One measurement group of an SR, as a lesion.

    Attributes:
        tracking_id, tracking_uid: the group's tracking identifier and UID.
        labels: the accepted label terms, in document order.
        scores: term -> the model's score, where the SR records it.
        added, removed: what the reader changed against the model (from the edit comment).
        review_status, reader: the reader's verdict, when recorded.
        coordinates: ``"image"`` (SCOORD on a source image) or ``"3d"`` (SCOORD3D).
        outline: the region's points as written (image coordinates, or LPS mm).
        source_image_uid: the image the SCOORD is drawn on.
        box_ijk: (i1, j1, i2, j2) inclusive voxel indices on ``key_slice`` of the volume given, else None.
        key_slice: K of the box on the volume given, else None.
    """

    tracking_id: str | None
    tracking_uid: str | None
    labels: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    review_status: str = ""
    reader: str = ""
    coordinates: str | None = None
    outline: tuple[tuple[float, ...], ...] = ()
    source_image_uid: str | None = None
    box_ijk: tuple[float, float, float, float] | None = None
    key_slice: int | None = None

    def apply_to(self, result: Any) -> Any:
        """The model's ``result`` for this lesion with the reader's labels and review from the SR.

        Labels the model does not have are left out (say, from another tool's SR).
        """
        terms = {x.term for x in result.labels}
        wanted = {t for t in self.labels if t in terms}
        edited = result.with_accepted(wanted)
        return edited.reviewed(self.review_status, self.reader) if self.review_status else edited


def read_sr_lesions(path: str | os.PathLike, volume: Any = None) -> list[SrLesion]:
    """The lesions of a TID 1500 SR, in document order (see the module docstring).

    Args:
        path: the SR file.
        volume: the annotated volume (``read_volume``'s, a ``DicomVolume`` for image coordinates); without it
            the boxes are not placed (``box_ijk`` None).

    Raises:
        LesaNetError: not a readable TID 1500 SR; a region that does not lie on a slice of ``volume``.
    """
    from .sr_read import read_dicom_sr

    lesions = []
    for group in read_dicom_sr(path):
        if group["kind"] != "planar":
            continue
        labels = list(group["labels"])
        for site in group["finding_sites"]:  # other tools may give the body part only as a finding site
            if site[2] not in labels:
                labels.insert(0, site[2])
        scores = {m["name"][2]: m["value"] for m in group["measurements"] if m["unit"][0] == C.PROBABILITY_UNIT[0]}
        added, removed, status, reader = (), (), "", ""
        for text in group["comments"]:
            if (match := _EDIT.match(text)) is not None:
                added, removed = _terms(match["added"]), _terms(match["removed"])
            elif (match := _REVIEW.match(text)) is not None:
                status, reader = match["status"], match["reader"] or ""
        outline = tuple(tuple(p) for p in group["graphic_data"] or ())
        box, key = (None, None)
        if volume is not None and outline:
            box, key = _box_on(volume, group, np.asarray(outline, dtype=np.float64), path)
        lesions.append(SrLesion(group["tracking_id"], group["tracking_uid"], tuple(labels), scores, added, removed,
                                status, reader, group["coordinates"], outline, group["source_image_uid"], box, key))
    return lesions


def _terms(text: str) -> tuple[str, ...]:
    return () if text.strip() == "none" else tuple(t.strip() for t in text.split(",") if t.strip())


def _box_on(volume: Any, group: dict, points: np.ndarray, path) -> tuple[tuple[float, ...], int]:
    if group["graphic_type"] == "CIRCLE" and len(points) == 2:  # centre and a point on the circle
        radius = float(np.linalg.norm(points[1] - points[0]))
        points = np.stack([points[0] - radius, points[0] + radius])
    if group["coordinates"] == "3d":
        lps = points[:, :3]
    else:
        lps = _image_to_lps(volume, group["source_image_uid"], points[:, :2], path)
    ijk = np.asarray(volume.lps_to_ijk(lps), dtype=np.float64)
    k = float(np.mean(ijk[:, 2]))
    if np.ptp(ijk[:, 2]) > 0.5 or not -0.5 <= k <= volume.size_ijk[2] - 0.5:
        raise invalid(f"sr {str(path)!r}: {group['tracking_id']}", "region must lie on one slice of the volume",
                      np.round(ijk, 2).tolist())
    low, high = ijk[:, :2].min(axis=0) + 0.5, ijk[:, :2].max(axis=0) - 0.5
    high = np.maximum(high, low)
    return (float(low[0]), float(low[1]), float(high[0]), float(high[1])), int(round(k))


def _image_to_lps(volume: Any, uid: str | None, points: np.ndarray, path) -> np.ndarray:
    """DICOM image coordinates on the source image ``uid`` (a slice of ``volume``) -> LPS millimetres."""
    dicom = getattr(volume, "dicom", None)
    refs = [r for r in (dicom.slices if dicom is not None else ()) if r is not None]
    ref = next((r for r in refs if r.sop_instance_uid == uid), None)
    if ref is None or ref.position is None or ref.orientation is None or ref.pixel_spacing is None:
        raise invalid(f"sr {str(path)!r}: referenced image", "must be a slice of the volume given (read the series "
                      "the SR points at)", uid)
    along_row, along_column = np.asarray(ref.orientation[:3], float), np.asarray(ref.orientation[3:], float)
    row_spacing, column_spacing = (float(v) for v in ref.pixel_spacing)
    columns, rows = points[:, 0] - 0.5, points[:, 1] - 0.5
    return (np.asarray(ref.position, float) + np.outer(columns * column_spacing, along_row)
            + np.outer(rows * row_spacing, along_column))
