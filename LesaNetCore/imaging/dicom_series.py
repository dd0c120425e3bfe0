"""Which series of a DICOM folder to read: grouping headers into series and the stated choice rule.

A study export holds more than the CT a user means: localizers (scouts, topograms), a dose report (an SR or a
secondary-capture screenshot), thin and thick reconstructions, sometimes other modalities. The rule, applied to
every series found:

1. it must be an image series, not a secondary capture (a screenshot) or a localizer;
2. its modality must be CT (any cross-sectional modality with ``allow_non_ct``), and a series whose Modality says
   CT while its SOP class is another modality's (an MR Image Storage labelled CT) is refused as mislabelled;
3. it must have image position and orientation (cross-sectional) and, for the automatic choice, axial slices;
4. among those: ORIGINAL before DERIVED, then the most images, then the lower Series Number, then the UID.

``series_uid`` overrides the choice (an explicit choice may be a non-axial reconstruction, never a series
refused by rule 1 or 2 unless ``allow_non_ct``). The notes returned say which series was read and what else was
there, so a user sees what the rule did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import LesaNetError
from .dicom_files import DicomHeader
from .dicom_frames import sop_class_name

_CT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its multi-frame variants .7.1 .. .7.4
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM"}
# A slice normal within this angle of the body axis counts as axial (gantry tilts reach 30 degrees).
_AXIAL_MAX_DEGREES = 45.0


@dataclass(frozen=True)
class SeriesSummary:
    """One series found in the input, with what the choice rule needs to know about it."""

    uid: str
    headers: tuple[DicomHeader, ...]
    modality: str
    description: str
    number: int | None
    sop_class: str
    images: int
    image_type: str  # the first value of Image Type (ORIGINAL / DERIVED), "" when absent
    localizer: bool
    orientation: str | None  # "axial", "coronal", "sagittal", "oblique" or None (no image plane)

    @property
    def is_image(self) -> bool:
        return all("Rows" in h.dataset for h in self.headers)

    def line(self) -> str:
        """A one-line description for notes and errors."""
        parts = [self.modality or "no modality"]
        if self.localizer:
            parts.append("localizer")
        elif self.orientation:
            parts.append(self.orientation)
        parts.append(f"{self.images} image{'s' if self.images != 1 else ''}" if self.is_image
                     else f"{len(self.headers)} {sop_class_name(self.sop_class)} instance"
                     f"{'s' if len(self.headers) != 1 else ''}")
        if self.is_image and self.image_type:
            parts.append(self.image_type)
        if self.description:
            parts.append(repr(self.description))
        return f"{self.uid or '(no SeriesInstanceUID)'} ({', '.join(parts)})"

    def refusal(self, allow_non_ct: bool, explicit: bool) -> str | None:
        """Why the rule does not read this series, or None when it may be read."""
        if not self.is_image:
            return f"not an image series ({sop_class_name(self.sop_class)})"
        if self.sop_class.startswith(_SECONDARY_CAPTURE):
            return "a secondary capture (a screenshot such as a dose report), not a reconstructed image series"
        if not allow_non_ct:
            if self.modality != "CT":
                return f"modality {self.modality or '(none)'}, not CT (pass --allow-non-ct to read it anyway)"
            if self.sop_class and self.sop_class not in _CT_CLASSES:
                return (f"Modality says CT but its SOP class is {sop_class_name(self.sop_class)}: a mislabelled "
                        "series (pass --allow-non-ct to read it anyway)")
        if explicit:
            return None
        if self.localizer:
            return "a localizer (scout), not a diagnostic series"
        if self.orientation is None:
            return "no image position and orientation (a projection image, not cross-sectional slices)"
        if self.orientation != "axial":
            return f"{self.orientation} slices, not axial (pass --series UID to read it anyway)"
        return None


def group_series(headers: Sequence[DicomHeader]) -> list[SeriesSummary]:
    """The headers grouped by Series Instance UID, in UID order."""
    groups: dict[str, list[DicomHeader]] = {}
    for header in headers:
        groups.setdefault(str(header.dataset.get("SeriesInstanceUID", "") or "").strip(), []).append(header)
    return [_summary(uid, members) for uid, members in sorted(groups.items())]


def choose_series(series: Sequence[SeriesSummary], source: str, series_uid: str | None = None,
                  allow_non_ct: bool = False) -> tuple[SeriesSummary, list[str]]:
    """The series to read by the rule in the module docstring, and notes saying what was chosen and why.

    Raises:
        LesaNetError: no series, an unknown ``series_uid``, or no series the rule accepts (each series is listed
            with the reason it was not read).
    """
    if not series:
        raise LesaNetError(f"{source}: must hold DICOM image files, but got no DICOM files")
    if series_uid is not None:
        found = [s for s in series if s.uid == series_uid]
        if not found:
            raise LesaNetError(f"series_uid (--series): must be one of the series in {source}: "
                               f"{'; '.join(s.line() for s in series)}, but got {series_uid!r}")
        chosen = found[0]
        reason = chosen.refusal(allow_non_ct, explicit=True)
        if reason is not None:
            raise LesaNetError(f"{source}: series {chosen.uid} cannot be read as a CT volume: {reason}")
        return chosen, [f"read series {chosen.line()}, as asked"] + _others(series, chosen)
    eligible = [s for s in series if s.refusal(allow_non_ct, explicit=False) is None]
    if not eligible:
        found = "; ".join(f"{s.line()}: {s.refusal(allow_non_ct, explicit=False)}" for s in series)
        raise LesaNetError(f"{source}: must hold an axial CT image series, but found {found}")
    chosen = min(eligible, key=lambda s: (s.image_type != "ORIGINAL", -s.images, s.number if s.number is not None else 1 << 30,
                                          s.uid))
    notes = [f"read series {chosen.line()}"]
    if len(series) > 1:
        notes[0] += (" (rule: axial CT, not a localizer or screenshot, ORIGINAL before DERIVED, then the most "
                     "images; --series UID picks another)")
    return chosen, notes + _others(series, chosen)


def is_localizer(ds) -> bool:
    """True for a localizer (scout, topogram) image by its Image Type."""
    return bool(_LOCALIZER_TYPES.intersection(str(v).strip().upper() for v in (ds.get("ImageType") or [])))


def _others(series: Sequence[SeriesSummary], chosen: SeriesSummary, shown: int = 8) -> list[str]:
    others = [s for s in series if s is not chosen]
    lines = [f"also here: {s.line()}" for s in others[:shown]]
    if len(others) > shown:
        lines.append(f"also here: {len(others) - shown} more series")
    return lines


def _summary(uid: str, headers: list[DicomHeader]) -> SeriesSummary:
    headers.sort(key=lambda h: h.path)
    first = headers[0].dataset
    image_type = [str(v).strip().upper() for v in (first.get("ImageType") or [])]
    images = sum(int(float(h.dataset.get("NumberOfFrames", 1) or 1)) for h in headers if "Rows" in h.dataset)
    number = first.get("SeriesNumber")
    try:
        number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        number = None
    return SeriesSummary(
        uid=uid,
        headers=tuple(headers),
        modality=str(first.get("Modality", "") or "").strip().upper(),
        description=str(first.get("SeriesDescription", "") or "").strip(),
        number=number,
        sop_class=str(first.get("SOPClassUID", "") or "").strip(),
        images=images,
        image_type=image_type[0] if image_type else "",
        localizer=is_localizer(first),
        orientation=_orientation(first),
    )


def _orientation(ds) -> str | None:
    """The plane of the first image: axial / coronal / sagittal by its normal, oblique otherwise."""
    value = ds.get("ImageOrientationPatient")
    for group in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        if value is None and ds.get(group):
            plane = ds.get(group)[0].get("PlaneOrientationSequence")
            value = plane[0].get("ImageOrientationPatient") if plane else None
    try:
        cosines = np.asarray([float(v) for v in value], dtype=float) if value is not None else None
    except (TypeError, ValueError):
        return None
    if cosines is None or cosines.shape != (6,):
        return None
    normal = np.cross(cosines[:3], cosines[3:])
    if not np.linalg.norm(normal) > 0.5:
        return None
    normal = np.abs(normal / np.linalg.norm(normal))
    axis = int(np.argmax(normal))
    if normal[axis] < np.cos(np.radians(_AXIAL_MAX_DEGREES)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


__all__ = ["SeriesSummary", "choose_series", "group_series", "is_localizer"]
