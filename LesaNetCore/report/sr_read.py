"""Reading TID 1500 measurement reports back, through highdicom's own template parser.

Used to check what :func:`~LesaNetCore.report.sr.write_dicom_sr` wrote and to read TID 1500 documents from
other tools (dcmqi, highdicom): every planar and volumetric ROI measurement group becomes a plain dict, so
callers need neither highdicom nor the SR tree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import invalid
from . import codes as C


def read_dicom_sr(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The measurement groups of a TID 1500 SR, in document order.

    Each dict holds:

    * ``kind``: ``"planar"`` (TID 1410) or ``"volumetric"`` (TID 1411);
    * ``tracking_id``, ``tracking_uid``: the tracking identifier and its UID (None when absent);
    * ``finding``: (value, scheme, meaning) of the Finding, or None;
    * ``finding_sites``: list of (value, scheme, meaning);
    * ``evaluations``: list of dicts ``{"concept": code, "value": code, "label_class": str | None}`` for coded
      qualitative evaluations; ``label_class`` is LesaNet's class when the concept is one of
      :data:`~LesaNetCore.report.codes.CLASS_CONCEPTS`;
    * ``labels``: the accepted label terms (meanings of the evaluations LesaNet writes), in document order;
    * ``measurements``: list of dicts ``{"name": code, "value": float, "unit": code}``;
    * ``comments``: texts of TEXT items in the group (e.g. the edited-label-set note); ``edited``: True when
      one starts with :data:`~LesaNetCore.report.codes.EDITED_PREFIX`;
    * ``graphic_type``, ``graphic_data`` (list of points as lists of floats), ``coordinates`` (``"image"`` for
      SCOORD, ``"3d"`` for SCOORD3D), ``source_image_uid`` (SOP Instance UID the SCOORD is drawn on) and
      ``frame_of_reference_uid`` (SCOORD3D): None where the group has no image region (e.g. a segment).

    Raises:
        LesaNetError: the file is not readable DICOM, not an SR or not a TID 1500 measurement report.
    """
    import highdicom as hd
    import pydicom

    name = str(Path(path))
    try:
        sr = hd.sr.srread(name)
    except (OSError, pydicom.errors.InvalidDicomError, ValueError, AttributeError, RuntimeError) as err:
        raise invalid("sr path", f"must be a readable DICOM SR file ({err})", name) from err
    report = sr.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise invalid("sr path", "must be a TID 1500 Measurement Report", name)
    groups: list[dict[str, Any]] = []
    for group in report.get_planar_roi_measurement_groups():
        groups.append(_group_dict(group, "planar"))
    for group in report.get_volumetric_roi_measurement_groups():
        groups.append(_group_dict(group, "volumetric"))
    order = {uid: i for i, uid in enumerate(_document_order(report))}
    groups.sort(key=lambda g: order.get(g["tracking_uid"], len(order)))
    return groups


def _document_order(report: Any) -> list[str | None]:
    """Tracking UIDs in the order the groups appear, so planar and volumetric groups keep their order."""
    uids: list[str | None] = []
    for item in report[0].ContentSequence:
        if _code_of(item.ConceptNameCodeSequence[0])[:2] != ("126010", "DCM"):
            continue
        for group in item.ContentSequence:
            uid = None
            for child in getattr(group, "ContentSequence", []):
                if _code_of(child.ConceptNameCodeSequence[0])[:2] == ("112040", "DCM"):
                    uid = str(child.UID)
            uids.append(uid)
    return uids


def _code_of(concept: Any) -> tuple[str, str, str]:
    value = getattr(concept, "CodeValue", None) or getattr(concept, "LongCodeValue", None) or getattr(
        concept, "URNCodeValue", "")
    return (str(value), str(concept.CodingSchemeDesignator), str(concept.CodeMeaning))


def _group_dict(group: Any, kind: str) -> dict[str, Any]:
    evaluations = []
    for evaluation in group.get_qualitative_evaluations():
        concept, value = _code_of(evaluation.name), _code_of(evaluation.value)
        evaluations.append({"concept": concept, "value": value,
                            "label_class": C.class_of_concept(concept[0], concept[1])})
    measurements = [
        {"name": _code_of(m.name), "value": float(m.value), "unit": _code_of(m.unit)}
        for m in group.get_measurements()
    ]
    comments = [
        str(item.TextValue)
        for item in group[0].ContentSequence
        if item.ValueType == "TEXT" and _code_of(item.ConceptNameCodeSequence[0])[:2] == C.COMMENT[:2]
    ]
    finding = group.finding_type
    out: dict[str, Any] = {
        "kind": kind,
        "tracking_id": group.tracking_identifier,
        "tracking_uid": None if group.tracking_uid is None else str(group.tracking_uid),
        "finding": None if finding is None else _code_of(finding),
        "finding_sites": [_code_of(site.value) for site in group.finding_sites],
        "evaluations": evaluations,
        "labels": [e["value"][2] for e in evaluations if e["label_class"] is not None],
        "measurements": measurements,
        "comments": comments,
        "edited": any(text.startswith(C.EDITED_PREFIX) for text in comments),
        "graphic_type": None,
        "graphic_data": None,
        "coordinates": None,
        "source_image_uid": None,
        "frame_of_reference_uid": None,
    }
    roi = _region(group)
    if roi is not None:
        out["graphic_type"] = roi.GraphicType
        out["graphic_data"] = [[float(v) for v in point] for point in roi.value]
        if roi.ValueType == "SCOORD3D":
            out["coordinates"] = "3d"
            out["frame_of_reference_uid"] = str(roi.ReferencedFrameOfReferenceUID)
        else:
            out["coordinates"] = "image"
            for child in getattr(roi, "ContentSequence", []):
                if child.ValueType == "IMAGE":
                    out["source_image_uid"] = str(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return out


def _region(group: Any) -> Any:
    """The group's SCOORD/SCOORD3D image region, or None (volumetric groups may reference a segment)."""
    try:
        roi = group.roi
    except (AttributeError, ValueError):
        return None
    if isinstance(roi, list | tuple):
        roi = roi[0] if roi else None
    if roi is None or getattr(roi, "ValueType", None) not in ("SCOORD", "SCOORD3D"):
        return None
    return roi


__all__ = ["read_dicom_sr"]
