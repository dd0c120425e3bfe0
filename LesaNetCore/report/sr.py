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
  names the added and removed terms; a ``observer`` name adds a person observer beside the device observer.

Patient and study come from the source images (highdicom copies the patient and general study modules from the
first one); the SR gets a new series; the referenced images are its evidence and its image library.

When the volume did not come from DICOM (NIfTI, NRRD), there is no image to point at. The SR is still valid:
the box becomes a closed SCOORD3D POLYGON in LPS millimetres (POLYGON being the standard's closed planar
shape in 3D) in a frame of reference whose UID is derived from the volume's source, and the patient and study
are synthetic (Patient ID from the file name, name "Anonymous", study UID derived from the source so reports of
one volume share a study) with no evidence sequence. :func:`non_dicom_warning` says so, and the writer logs it.
"""

from __future__ import annotations

import datetime
import logging
import os
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
    """The warning to show when ``volume`` has no DICOM source images, else None."""
    if getattr(volume, "slice_files", None):
        return None
    source = str(getattr(volume, "source", "") or "<unnamed volume>")
    return (
        f"volume {source!r} has no DICOM source images: the SR uses 3D coordinates (SCOORD3D, LPS mm) in a new "
        "frame of reference and a synthetic anonymous patient and study; PACS cannot link it to the original "
        "images. The JSON and Markdown reports are unaffected."
    )


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

    warning = non_dicom_warning(volume)
    if warning is None:
        datasets, regions = _dicom_regions(results, volume)
        evidence = list({ds.SOPInstanceUID: ds for ds in datasets}.values())
        referenced_images = evidence
    else:
        _LOG.warning(warning)
        regions = _regions_3d(results, volume)
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


def _slice_file(result: AnnotationResult, volume: Any, index: int) -> str:
    files = volume.slice_files
    key = int(result.location.key_slice)
    if not 0 <= key < len(files):
        raise invalid(f"results[{index}].location.key_slice", f"must index the volume's {len(files)} slice files",
                      key)
    return str(files[key])


def _dicom_regions(results: list[AnnotationResult], volume: Any) -> tuple[list[Any], list[Any]]:
    import highdicom as hd
    import pydicom

    datasets, regions, cache = [], [], {}
    for index, result in enumerate(results):
        name = _slice_file(result, volume, index)
        if name not in cache:
            try:
                cache[name] = pydicom.dcmread(name, stop_before_pixels=True)
            except (OSError, pydicom.errors.InvalidDicomError) as err:
                raise invalid("volume.slice_files", f"must be readable DICOM files ({err})", name) from err
        ds = cache[name]
        graphic = _image_coordinates(_to_lps(volume, _corners_ijk(result, index)), ds, volume, name)
        datasets.append(ds)
        regions.append(hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=graphic,
            source_image=hd.sr.SourceImageForRegion.from_source_image(ds),
        ))
    return datasets, regions


def _image_coordinates(points_lps: np.ndarray, ds: Any, volume: Any, name: str) -> np.ndarray:
    """LPS points -> (column, row) DICOM image coordinates of ``ds``, checking they lie on its plane."""
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if keyword not in ds:
            raise invalid("volume.slice_files", f"must be images with {keyword} (a cross-sectional image)", name)
    origin = np.array(ds.ImagePositionPatient, dtype=float)
    orientation = np.array(ds.ImageOrientationPatient, dtype=float)
    along_row, along_column = orientation[:3], orientation[3:]
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    normal = np.cross(along_row, along_column)
    offset = points_lps - origin
    distance = float(np.max(np.abs(offset @ normal)))
    tolerance = 0.5 * float(np.asarray(volume.spacing, dtype=float).reshape(3)[2]) + 1e-3
    if distance > tolerance:
        raise invalid(
            "volume.slice_files",
            f"the key slice's file must contain the box's plane (box is {distance:.3f} mm off the image plane, "
            f"allowed {tolerance:.3f})",
            name,
        )
    # Pixel centre (c, r) sits at origin + c*dc*row_dir + r*dr*col_dir and at image coordinate (c+.5, r+.5).
    columns = offset @ along_row / column_spacing + 0.5
    rows = offset @ along_column / row_spacing + 0.5
    return np.round(np.stack([columns, rows], axis=1), 6).astype(np.float32)


def _regions_3d(results: list[AnnotationResult], volume: Any) -> list[Any]:
    import highdicom as hd

    frame = _frame_of_reference_uid(volume)
    return [
        hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POLYGON,
            # float64: highdicom checks co-planarity to 1e-5 mm, which float32 rounding of ~250 mm can exceed.
            graphic_data=np.round(_to_lps(volume, _corners_ijk(result, index)), 6),
            frame_of_reference_uid=frame,
        )
        for index, result in enumerate(results)
    ]


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
    if result.edited:
        group[0].ContentSequence.append(hd.sr.TextContentItem(
            name=C.code(C.COMMENT),
            value=_edit_comment(result),
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
