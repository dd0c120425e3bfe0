"""JSON annotation report: everything an :class:`~LesaNetCore.result.AnnotationResult` holds, losslessly.

Schema (format ``"lesanet-annotation-report"``, version 1)::

    {
      "format": "lesanet-annotation-report",
      "version": 1,
      "lesions": [                                  # one object per AnnotationResult, in order
        {
          "model": "lesanet_vgg16bn sha256:...",    # AnnotationResult.model
          "volume_source": "/data/ct.nii.gz",       # AnnotationResult.volume_source
          "top_finding": "liver mass",              # informative, derived (ignored on reading)
          "edited": false,                          # informative, derived (ignored on reading)
          "location": {
            "key_slice": 41,                        # K, 0-based
            "box_ijk": [120, 88, 161, 130],         # i1, j1, i2, j2; voxel indices, corners inclusive
            "center_lps": [x, y, z],                # mm
            "box_lps": [x1, y1, x2, y2, z] | null,  # mm
            "source_file": "/dicom/IM41.dcm" | null,
            "recist_ij": [[i, j], ...] | null       # RECIST end points when the box came from a measurement
          },
          "labels": [                               # every label of the model, in the model's order
            {"term": "liver", "class": "bodypart", "score": 0.93, "threshold": 0.5,
             "decision": true, "accepted": true, "radlex": "RID58" | null,
             "parents": ["upper abdomen"]}   (direct parents among the model's labels; optional)
          ],
          "accepted": ["liver", ...],               # sorted; the user's accepted set (authoritative)
          "added": ["..."],                         # sorted; accepted terms the model did not decide
          "similar": [                              # nearest first
            {"lesion_id": "17", "patient_id": "3", "distance": 0.41, "labels": ["lung", ...],
             "sentence": "...", "thumbnail": ARRAY | null}
          ],
          "embedding": [0.01, ...],                 # 256 float32 values written as JSON numbers
          "patch_image": ARRAY | null,              # the 3 x H x W patch the model saw
          "patch_box": [x1, y1, x2, y2] | null,     # lesion box in patch pixels
          "timings_ms": {"patch": 3.1, "forward": 40.2, "search": 0.4, "total": 45.0},
          "review": {"status": "corrected", "reader": "Doe^Jane"}   # optional: a reader's verdict
        }
      ]
    }

``ARRAY`` is ``{"dtype": "uint8", "shape": [H, W], "base64": "<little-endian bytes>"}``: exact for any dtype
and readable with ``numpy.frombuffer``. Floats are written with Python's shortest round-trip repr, so
``read_json_report(write_json_report(r))`` gives back equal values (the embedding as float32). Images can be
left out (``include_images=False``) for a small file; they then read back as None.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LesaNetError, invalid
from ..fileio import write_text_atomic
from ..result import AnnotationResult, LabelScore, LesionLocation, SimilarLesion

FORMAT = "lesanet-annotation-report"
VERSION = 1


def write_json_report(
    results: Sequence[AnnotationResult],
    path: str | os.PathLike,
    overwrite: bool = False,
    *,
    include_images: bool = True,
) -> Path:
    """Writes ``results`` as a JSON report (schema in the module docstring), atomically.

    Args:
        results: annotated lesions, in report order.
        path: output .json file.
        overwrite: replace an existing file.
        include_images: write the patch image and the similar lesions' thumbnails (base64).

    Returns:
        The written path.
    """
    text = json.dumps(report_to_dict(results, include_images=include_images), indent=1, ensure_ascii=False)
    return write_text_atomic(path, text + "\n", "json path", overwrite)


def read_json_report(path: str | os.PathLike) -> list[AnnotationResult]:
    """Reads a JSON report written by :func:`write_json_report` back into AnnotationResults.

    Raises:
        LesaNetError: unreadable file, another format or version, or a missing or malformed field.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise invalid("json path", f"must be a readable JSON file ({err})", str(path)) from err
    return report_from_dict(data, where=str(path))


def report_to_dict(results: Sequence[AnnotationResult], *, include_images: bool = True) -> dict[str, Any]:
    """The JSON-ready dict of ``results`` (what :func:`write_json_report` writes)."""
    if isinstance(results, AnnotationResult):
        results = [results]
    lesions = []
    for index, result in enumerate(results):
        if not isinstance(result, AnnotationResult):
            raise invalid(f"results[{index}]", "must be an AnnotationResult", type(result).__name__)
        lesions.append(_lesion_to_dict(result, include_images))
    return {"format": FORMAT, "version": VERSION, "lesions": lesions}


def report_from_dict(data: Any, where: str = "report") -> list[AnnotationResult]:
    """AnnotationResults from a dict in the report schema; errors name the offending field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise invalid(f"{where}: format", f"must be {FORMAT!r}", got)
    if data.get("version") != VERSION:
        raise invalid(f"{where}: version", f"must be {VERSION} (this reader's version)", data.get("version"))
    lesions = data.get("lesions")
    if not isinstance(lesions, list):
        raise invalid(f"{where}: lesions", "must be a list", type(lesions).__name__)
    out = []
    for index, lesion in enumerate(lesions):
        try:
            out.append(_lesion_from_dict(lesion))
        except LesaNetError as err:
            raise LesaNetError(f"{where}: lesions[{index}].{err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise invalid(f"{where}: lesions[{index}]", f"must follow the {FORMAT} schema ({err!r})", "...") from err
    return out


def _lesion_to_dict(result: AnnotationResult, include_images: bool) -> dict[str, Any]:
    loc = result.location
    return {
        "model": result.model,
        "volume_source": result.volume_source,
        "top_finding": result.top_finding(),
        "edited": result.edited,
        "location": {
            "key_slice": loc.key_slice,
            "box_ijk": list(loc.box_ijk),
            "center_lps": list(loc.center_lps),
            "box_lps": None if loc.box_lps is None else list(loc.box_lps),
            "source_file": loc.source_file,
            "recist_ij": None if loc.recist_ij is None else [list(p) for p in loc.recist_ij],
        },
        "labels": [
            {"term": x.term, "class": x.label_class, "score": x.score, "threshold": x.threshold,
             "decision": x.decision, "accepted": x.term in result.accepted, "radlex": x.radlex,
             "parents": list(x.parents)}
            for x in result.labels
        ],
        "accepted": sorted(result.accepted),
        "added": sorted(result.added),
        "similar": [
            {"lesion_id": s.lesion_id, "patient_id": s.patient_id, "distance": s.distance,
             "labels": list(s.labels), "sentence": s.sentence,
             "thumbnail": _array_to_json(s.thumbnail) if include_images else None}
            for s in result.similar
        ],
        "embedding": np.asarray(result.embedding).astype(np.float32).ravel().tolist(),
        "patch_image": _array_to_json(result.patch_image) if include_images else None,
        "patch_box": None if result.patch_box is None else list(result.patch_box),
        "timings_ms": dict(result.timings_ms),
        "review": {"status": result.review_status, "reader": result.reader},
    }


def _lesion_from_dict(d: dict[str, Any]) -> AnnotationResult:
    loc = d["location"]
    location = LesionLocation(
        key_slice=loc["key_slice"],
        box_ijk=_tuple(loc["box_ijk"], 4, "location.box_ijk"),
        center_lps=_tuple(loc["center_lps"], 3, "location.center_lps"),
        box_lps=None if loc.get("box_lps") is None else _tuple(loc["box_lps"], 5, "location.box_lps"),
        source_file=loc.get("source_file"),
        recist_ij=None if not loc.get("recist_ij") else tuple(
            _tuple(p, 2, "location.recist_ij[]") for p in loc["recist_ij"]),
    )
    labels = tuple(
        LabelScore(term=x["term"], label_class=x["class"], score=x["score"], threshold=x["threshold"],
                   decision=bool(x["decision"]), radlex=x.get("radlex"), parents=tuple(x.get("parents") or ()))
        for x in d["labels"]
    )
    terms = {x.term for x in labels}
    accepted = frozenset(d["accepted"])
    unknown = sorted((accepted | set(d.get("added", []))) - terms)
    if unknown:
        raise invalid("accepted", "must only hold terms of the lesion's labels", unknown)
    similar = tuple(
        SimilarLesion(lesion_id=s["lesion_id"], patient_id=s["patient_id"], distance=s["distance"],
                      labels=tuple(s["labels"]), sentence=s.get("sentence", ""),
                      thumbnail=_array_from_json(s.get("thumbnail"), "similar.thumbnail"))
        for s in d.get("similar", [])
    )
    patch_box = d.get("patch_box")
    return AnnotationResult(
        labels=labels,
        accepted=accepted,
        location=location,
        embedding=np.asarray(d["embedding"], dtype=np.float32),
        similar=similar,
        patch_image=_array_from_json(d.get("patch_image"), "patch_image"),
        patch_box=None if patch_box is None else _tuple(patch_box, 4, "patch_box"),
        timings_ms=dict(d.get("timings_ms", {})),
        model=d.get("model", ""),
        volume_source=d.get("volume_source", ""),
        added=frozenset(d.get("added", [])),
        review_status=str((d.get("review") or {}).get("status", "")),
        reader=str((d.get("review") or {}).get("reader", "")),
    )


def _tuple(values: Any, length: int, field: str) -> tuple:
    if not isinstance(values, list) or len(values) != length:
        raise invalid(field, f"must be a list of {length} numbers", values)
    return tuple(values)


def _array_to_json(array: np.ndarray | None) -> dict[str, Any] | None:
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "base64": base64.b64encode(little.tobytes()).decode("ascii")}


def _array_from_json(data: Any, field: str) -> np.ndarray | None:
    if data is None:
        return None
    try:
        dtype = np.dtype(data["dtype"]).newbyteorder("<")
        raw = base64.b64decode(data["base64"], validate=True)
        array = np.frombuffer(raw, dtype=dtype).reshape(tuple(data["shape"]))
    except (KeyError, TypeError, ValueError) as err:
        raise invalid(field, f"must be an array object with dtype, shape and base64 ({err})", "...") from err
    return array.astype(array.dtype.newbyteorder("="))


__all__ = ["FORMAT", "VERSION", "read_json_report", "report_from_dict", "report_to_dict", "write_json_report"]
