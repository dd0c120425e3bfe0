"""DICOM Structured Report (TID 1500 Measurement Report) of annotated lesions, built with highdicom.

One TID 1410 planar ROI measurement group per lesion, so PACS viewers, dcmqi and Slicer's QuantitativeReporting
read the annotation back with the standard's own meaning:

* the box is a closed POLYLINE (5 points, first = last) on the key slice's source image, in DICOM image
  coordinates: (0, 0) is the top-left corner of the top-left pixel, so the centre of pixel (column i, row j)
  is (i + 0.5, j + 0.5) and a box whose inclusive corner pixels are i1..i2, j1..j2 spans i1..i2 + 1 and
  j1..j2 + 1. The corners are projected through the volume's geometry onto the source image's own
  position/orientation/spacing, so a volume stored in another orientation than its DICOM files still lands
  on the right pixels (and a slice file that does not lie on the key slice is an error, not a silent shift);
* tracking identifier "Lesion N" with a new tracking UID, Finding = SCT 52988006 "Lesion", one Finding Site per
  accepted body-part label, one qualitative evaluation per accepted label, the model's score of each accepted
  label as a ``{probability}`` measurement and an algorithm identification (see :mod:`.codes`);
* an edited label set exports as edited: only accepted labels become evaluations and a "Comment" text item
  names the added and removed terms; a ``observer`` name (default: the results' reader) adds a person observer
  beside the device observer, and a reviewed lesion carries a "Review: <status> by <reader>" comment.

Patient and study come from the source images (highdicom copies the patient and general study modules from the
first one); the SR gets a new series; the referenced images are its evidence and (single-frame ones) its image
library. The source of each slice comes from :func:`~LesaNetCore.imaging.dicom_volume.dicom_source`: the SOP
Class and Instance UIDs actually found (the file meta's where an anonymiser blanked the dataset's) and, for a
multi-frame image, the referenced frame number. A key slice that the reader interpolated (a missing slice) lies
on no image: that box is a SCOORD3D POLYGON in the series' own frame of reference, with the two neighbouring
images as evidence, so the SR still belongs to the patient and study.

When the volume did not come from DICOM (NIfTI, NRRD), or its files carry no SOP Instance UIDs at all, there is
no image to point at. The SR is still valid:
the box becomes a closed SCOORD3D POLYGON in LPS millimetres (POLYGON being the standard's closed planar
shape in 3D) in a frame of reference whose UID is derived from the volume's source, and the patient and study
are synthetic (Patient ID from the file name, name "Anonymous", study UID derived from the source so reports of
one volume share a study) with no evidence sequence. :func:`non_dicom_warning` says so, and the writer logs it.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import invalid
from ..fileio import atomic_path, check_writable
from ..result import AnnotationResult
from . import codes as C

_LOG = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def non_dicom_warning(volume: Any) -> str | None:
    """The warning to show when ``volume``'s SR cannot point at DICOM source images, else None.

    That is a volume without DICOM files (NIfTI, NRRD), or a DICOM one whose files carry no SOP Instance UIDs
    (blanked in the dataset and absent from the file meta) or no Study Instance UID.
    """
    source = str(getattr(volume, "source", "") or "<unnamed volume>")
    dicom = getattr(volume, "dicom", None)
    if dicom is not None:
        if _usable(dicom):
            return None
        return (f"volume {source!r}: its DICOM files carry no SOP Instance UIDs or Study Instance UID (neither in the "
                f"datasets nor in the file meta), so {_NO_SOURCE_TAIL}")
    if getattr(volume, "slice_files", None):
        return None
    return f"volume {source!r} has no DICOM source images: {_NO_SOURCE_TAIL}"


_NO_SOURCE_TAIL = ("the SR uses 3D coordinates (SCOORD3D, LPS mm) in a new frame of reference and a synthetic anonymous "
                   "patient and study; PACS cannot link it to the original images. The JSON and Markdown reports are "
                   "unaffected.")


def _usable(dicom: Any) -> bool:
    header = dicom.header
    return bool(dicom.has_uids and str(header.get("StudyInstanceUID", "") or "").strip()
                and str(header.get("SeriesInstanceUID", "") or "").strip())


def write_dicom_sr(
    results: Sequence[AnnotationResult],
    path: str | os.PathLike,
    *,
    volume: Any,
    overwrite: bool = False,
    device_name: str = "LesaNet",
    observer: str | None = None,
    manufacturer: str = "LesaNet for 3D Slicer",
    series_number: int = 990,
    series_description: str = "LesaNet lesion annotations",
    institution_name: str | None = None,
) -> Path:
    """Writes a TID 1500 Comprehensive 3D SR of ``results`` (one measurement group per lesion).

    Args:
        results: annotated lesions of one volume, in report order ("Lesion 1", "Lesion 2", ...).
        path: output .dcm file; written atomically.
        volume: the annotated volume (``source``, ``slice_files``, ``spacing``, ``ijk_to_lps`` are used). With
            ``slice_files`` each box points at its key slice's DICOM image; without, see the module docstring.
        overwrite: replace an existing file.
        device_name: name of the device observer (the algorithm that made the annotations).
        observer: person observer name in DICOM PN form (``"Doe^Jane"``), e.g. the reader who reviewed edits.
        manufacturer: SR manufacturer (general equipment module).
        series_number: series number of the new SR series.
        series_description: series description of the new SR series.
        institution_name: optional institution name.

    Returns:
        The written path.

    Raises:
        LesaNetError: no results, a malformed box, a missing or inconsistent DICOM source slice, or an existing
            output file without ``overwrite``.
    """
    results = _check_results(results)
    if not str(device_name).strip():
        raise invalid("device_name", "must be a non-empty name", device_name)
    path = check_writable(path, "sr path", overwrite)
    import highdicom as hd
    from pydicom.uid import generate_uid

    from ..imaging.dicom_volume import dicom_source

    source = dicom_source(volume)
    warning = non_dicom_warning(volume)
    if warning is None and source is not None and not _usable(source):
        warning = f"volume {getattr(volume, 'source', '')!r}: its DICOM files carry no UIDs, so {_NO_SOURCE_TAIL}"
    if warning is None:
        regions, evidence, referenced_images = _dicom_regions(results, volume, source)
    else:
        _LOG.warning(warning)
        regions = _regions_3d(results, volume, _frame_of_reference_uid(volume))
        evidence = [_synthetic_evidence(volume)]
        referenced_images = None

    model = next((r.model for r in results if r.model), "") or "unknown"
    algorithm = hd.sr.AlgorithmIdentification(name=device_name[:64], version=model[:64])
    groups = [
        _measurement_group(result, number, region, algorithm)
        for number, (result, region) in enumerate(zip(results, regions, strict=True), start=1)
    ]

    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["lesanet-device", device_name, model]),
            name=device_name[:64],
            manufacturer_name=manufacturer[:64],
            model_name=model[:64],
        ),
    )
    person = None
    if observer is None:  # the reader who reviewed the lesions, when one did
        observer = next((r.reader for r in results if r.reader), None)
    if observer is not None:
        if not str(observer).strip():
            raise invalid("observer", "must be a non-empty person name such as 'Doe^Jane'", observer)
        person = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=str(observer)),
        )
    modality = str(getattr(evidence[0], "Modality", "CT"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=person, observer_device_context=device
        ),
        procedure_reported=C.code(C.CT_PROCEDURE if modality == "CT" else C.IMAGING_PROCEDURE),
        imaging_measurements=groups,
        referenced_images=referenced_images,
    )
    with warnings.catch_warnings():
        # The patient's name is copied from the source images as they are; archives often write an ID there,
        # which highdicom warns about on every export although nothing can be fixed at this point.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=report,
            series_instance_uid=hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=manufacturer[:64],
            institution_name=institution_name,
            is_complete=True,
        )
    sr.SeriesDescription = series_description[:64]
    if warning is not None:
        # The synthetic source instance does not exist; listing it as evidence would send PACS looking for it.
        for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
            if keyword in sr:
                delattr(sr, keyword)
    if any(label.radlex is None for r in results for label in r.accepted_labels()):
        sr.CodingSchemeIdentificationSequence = [_private_scheme_item()]
    with atomic_path(path, "sr path", overwrite) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    return path


def _check_results(results: Sequence[AnnotationResult]) -> list[AnnotationResult]:
    results = list(results) if not isinstance(results, AnnotationResult) else [results]
    if not results:
        raise invalid("results", "must hold at least one AnnotationResult", results)
    for index, result in enumerate(results):
        if not isinstance(result, AnnotationResult):
            raise invalid(f"results[{index}]", "must be an AnnotationResult", type(result).__name__)
        _box(result, index)
    return results


def _box(result: AnnotationResult, index: int) -> tuple[float, float, float, float]:
    box = result.location.box_ijk
    if len(box) != 4 or not all(np.isfinite(float(v)) for v in box):
        raise invalid(f"results[{index}].location.box_ijk", "must be 4 finite numbers (i1, j1, i2, j2)", box)
    i1, j1, i2, j2 = (float(v) for v in box)
    if i1 > i2 or j1 > j2:
        raise invalid(f"results[{index}].location.box_ijk", "must have i1 <= i2 and j1 <= j2", box)
    return i1, j1, i2, j2


def _corners_ijk(result: AnnotationResult, index: int) -> np.ndarray:
    """The box outline as 5 continuous (i, j, k) points, first = last, on voxel edges (inclusive corners)."""
    i1, j1, i2, j2 = _box(result, index)
    k = float(result.location.key_slice)
    lo_i, hi_i, lo_j, hi_j = i1 - 0.5, i2 + 0.5, j1 - 0.5, j2 + 0.5
    return np.array([[lo_i, lo_j, k], [hi_i, lo_j, k], [hi_i, hi_j, k], [lo_i, hi_j, k], [lo_i, lo_j, k]])


def _to_lps(volume: Any, points_ijk: np.ndarray) -> np.ndarray:
    return np.array([np.asarray(volume.ijk_to_lps(p), dtype=float).reshape(3) for p in points_ijk])


def _dicom_regions(results: list[AnnotationResult], volume: Any, source: Any) -> tuple[list, list, list | None]:
    """Per result its region on the key slice's source image (SCOORD), or in 3D in the series' frame of reference
    (SCOORD3D) where the key slice was interpolated; the evidence and the image library datasets."""
    import highdicom as hd

    regions, used = [], {}
    frame_uid = source.frame_of_reference_uid or _frame_of_reference_uid(volume)
    for index, result in enumerate(results):
        key = int(result.location.key_slice)
        if not 0 <= key < len(source.slices):
            raise invalid(f"results[{index}].location.key_slice",
                          f"must index the volume's {len(source.slices)} slices", key)
        ref = source.slices[key]
        points = _to_lps(volume, _corners_ijk(result, index))
        if ref is None:  # an interpolated slice: no image holds the box, its neighbours are the evidence
            for neighbour in source.neighbours[key]:
                used.setdefault((neighbour.sop_instance_uid, neighbour.frame_number), neighbour)
            regions.append(_region_3d(points, frame_uid))
            continue
        used.setdefault((ref.sop_instance_uid, ref.frame_number), ref)
        regions.append(hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=_image_coordinates(points, ref, volume),
            source_image=hd.sr.SourceImageForRegion(
                referenced_sop_class_uid=ref.sop_class_uid,
                referenced_sop_instance_uid=ref.sop_instance_uid,
                referenced_frame_numbers=None if ref.frame_number is None else [ref.frame_number],
            ),
        ))
    evidence = list({ref.sop_instance_uid: _evidence(source.header, ref) for ref in used.values()}.values())
    # The image library describes single-frame images by their own plane; a multi-frame one is left out of it.
    library = [_evidence(source.header, ref) for ref in used.values()
               if ref.frame_number is None and ref.thickness is not None]
    return regions, evidence, library or None


def _evidence(header: Any, ref: Any) -> Any:
    """The source image as highdicom's evidence and image library need it: study header plus its identity and plane."""
    ds = copy.deepcopy(header)
    ds.SOPClassUID, ds.SOPInstanceUID = ref.sop_class_uid, ref.sop_instance_uid
    ds.Rows, ds.Columns = ref.rows, ref.columns
    ds.ImagePositionPatient = [float(v) for v in ref.position]
    ds.ImageOrientationPatient = [float(v) for v in ref.orientation]
    ds.PixelSpacing = [float(v) for v in ref.pixel_spacing]
    if ref.thickness is not None:
        ds.SliceThickness = float(ref.thickness)
    return ds


def _image_coordinates(points_lps: np.ndarray, ref: Any, volume: Any) -> np.ndarray:
    """LPS points -> (column, row) DICOM image coordinates of the source frame ``ref``, checking they lie on its
    plane."""
    origin = np.array(ref.position, dtype=float)
    orientation = np.array(ref.orientation, dtype=float)
    along_row, along_column = orientation[:3], orientation[3:]
    row_spacing, column_spacing = (float(v) for v in ref.pixel_spacing)
    normal = np.cross(along_row, along_column)
    offset = points_lps - origin
    distance = float(np.max(np.abs(offset @ normal)))
    tolerance = 0.5 * float(np.asarray(volume.spacing, dtype=float).reshape(3)[2]) + 1e-3
    if distance > tolerance:
        raise invalid(
            "volume.slice_files",
            f"the key slice's file must contain the box's plane (box is {distance:.3f} mm off the image plane, "
            f"allowed {tolerance:.3f})",
            ref.describe(),
        )
    # Pixel centre (c, r) sits at origin + c*dc*row_dir + r*dr*col_dir and at image coordinate (c+.5, r+.5).
    columns = offset @ along_row / column_spacing + 0.5
    rows = offset @ along_column / row_spacing + 0.5
    return np.round(np.stack([columns, rows], axis=1), 6).astype(np.float32)


def _regions_3d(results: list[AnnotationResult], volume: Any, frame_uid: str) -> list[Any]:
    return [_region_3d(_to_lps(volume, _corners_ijk(result, index)), frame_uid)
            for index, result in enumerate(results)]


def _region_3d(points_lps: np.ndarray, frame_uid: str) -> Any:
    import highdicom as hd

    return hd.sr.ImageRegion3D(
        graphic_type=hd.sr.GraphicTypeValues3D.POLYGON,
        # float64: highdicom checks co-planarity to 1e-5 mm, which float32 rounding of ~250 mm can exceed.
        graphic_data=np.round(points_lps, 6),
        frame_of_reference_uid=frame_uid,
    )


def _frame_of_reference_uid(volume: Any) -> str:
    # pydicom hashes entropy_srcs only under a prefix; prefix=None would draw a random UUID UID instead.
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["lesanet-frame", str(getattr(volume, "source", ""))])


def _synthetic_evidence(volume: Any) -> Any:
    """Patient and study attributes for a volume without DICOM headers (never saved, never referenced)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    source = str(getattr(volume, "source", "") or "volume")
    name = Path(source).name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    ds = Dataset()
    ds.PatientID = (name or "volume")[:64]
    ds.PatientName = "Anonymous^"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["lesanet-study", source])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["lesanet-series", source])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["lesanet-instance", source])
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.AccessionNumber = ""
    ds.StudyID = "LESANET"
    now = datetime.datetime.now()
    ds.StudyDate = now.strftime("%Y%m%d")
    ds.StudyTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    return ds


def _measurement_group(result: AnnotationResult, number: int, region: Any, algorithm: Any) -> Any:
    import highdicom as hd

    accepted = result.accepted_labels()
    codes = {label.term: C.code(C.label_code(label.term, label.radlex)) for label in accepted}
    unknown = [x.label_class for x in accepted if x.label_class not in C.CLASS_CONCEPTS]
    if unknown:
        raise invalid("label_class", f"must be one of {sorted(C.CLASS_CONCEPTS)}", unknown[0])
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"Lesion {number}"),
        referenced_region=region,
        finding_type=C.code(C.LESION),
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes[x.term]) for x in accepted if x.label_class == "bodypart"] or None,
        measurements=[
            hd.sr.Measurement(name=codes[x.term], value=float(x.score), unit=C.code(C.PROBABILITY_UNIT))
            for x in accepted
        ] or None,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=C.code(C.CLASS_CONCEPTS[x.label_class]), value=codes[x.term])
            for x in accepted
        ] or None,
    )
    comments = [_edit_comment(result)] if result.edited else []
    if result.review_status:
        comments.append(f"{C.REVIEW_PREFIX}: {result.review_status}" + (f" by {result.reader}" if result.reader else ""))
    for text in comments:
        group[0].ContentSequence.append(hd.sr.TextContentItem(
            name=C.code(C.COMMENT),
            value=text,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ))
    return group


def _edit_comment(result: AnnotationResult) -> str:
    decided = {x.term for x in result.labels if x.decision}
    added = sorted(result.accepted - decided)
    removed = sorted(decided - result.accepted)
    return (f"{C.EDITED_PREFIX}: added {', '.join(added) or 'none'}; "
            f"removed {', '.join(removed) or 'none'}.")


def _private_scheme_item() -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = C.PRIVATE_SCHEME
    item.CodingSchemeName = C.PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = C.PRIVATE_SCHEME_ORGANIZATION
    return item


__all__ = ["non_dicom_warning", "write_dicom_sr"]
