"""The DICOM reader's rules one at a time, on small series: series choice, tilt geometry, per-frame rescale, padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from test_report_sr import ORIGIN, THICKNESS, write_ct_series

from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging.dicom_files import DicomHeader
from LesaNetCore.imaging.dicom_series import choose_series, group_series
from LesaNetCore.imaging.readers import read_volume


def _header(series: str, n: int, image_type=("ORIGINAL", "PRIMARY", "AXIAL"), number=1, modality="CT",
            orientation=(1, 0, 0, 0, 1, 0)) -> DicomHeader:
    ds = Dataset()
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = series, modality, number
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    ds.ImageType, ds.ImageOrientationPatient, ds.Rows, ds.Columns = list(image_type), list(orientation), 8, 8
    return DicomHeader(f"/x/{series}/{n}.dcm", ds)


def _series(uid, count, **kw):
    return [_header(uid, n, **kw) for n in range(count)]


def test_the_rule_prefers_original_then_most_images_then_series_number():
    found = group_series(_series("1.1", 40, image_type=("DERIVED", "SECONDARY", "AXIAL"))
                         + _series("1.2", 30) + _series("1.3", 30, number=0) + _series("1.4", 90, modality="MR")
                         + _series("1.5", 200, orientation=(1, 0, 0, 0, 0, -1)))
    chosen, notes = choose_series(found, "study")
    assert chosen.uid == "1.3"  # ORIGINAL beats the larger DERIVED one; of two equal, the lower series number
    assert "rule: axial CT" in notes[0] and len(notes) == 5
    assert any("1.5 (CT, coronal, 200 images" in n for n in notes)
    assert choose_series(found, "study", series_uid="1.5")[0].uid == "1.5"  # non-axial when asked for
    with pytest.raises(LesaNetError, match="modality MR, not CT"):
        choose_series(found, "study", series_uid="1.4")
    assert choose_series(found, "study", series_uid="1.4", allow_non_ct=True)[0].uid == "1.4"


def test_nothing_eligible_lists_every_series_with_its_reason():
    found = group_series(_series("2.1", 2, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
                         + _series("2.2", 10, modality="MR"))
    with pytest.raises(LesaNetError) as info:
        choose_series(found, "study")
    text = str(info.value)
    assert "2.1 (CT, localizer, 2 images, ORIGINAL): a localizer" in text and "2.2" in text and "modality MR" in text


def _rewrite(files, change):
    for k, name in enumerate(files):
        ds = pydicom.dcmread(name)
        change(ds, k)
        ds.save_as(name)


def test_a_tilted_stack_keeps_every_slice_on_its_own_image(tmp_path):
    files = write_ct_series(tmp_path)
    shift = np.tan(np.radians(20.0)) * THICKNESS
    _rewrite(files, lambda ds, k: setattr(ds, "ImagePositionPatient",
                                          [ORIGIN[0], ORIGIN[1] + k * shift, ORIGIN[2] + k * THICKNESS]))
    volume = read_volume(tmp_path)
    for k, name in enumerate(files):  # the K axis follows the stack exactly: voxel (0, 0, k) is file k's corner
        np.testing.assert_allclose(volume.ijk_to_lps([0, 0, k]), pydicom.dcmread(name).ImagePositionPatient,
                                   atol=1e-6)
    assert volume.dicom.slices[2].path == str(files[2])


def test_duplicated_position_shifted_in_plane_is_refused(tmp_path):
    files = write_ct_series(tmp_path)
    _rewrite(files[1:2], lambda ds, k: setattr(ds, "ImagePositionPatient", [ORIGIN[0] + 5, ORIGIN[1], ORIGIN[2]]))
    with pytest.raises(LesaNetError, match="slices at the same height must be at the same position"):
        read_volume(tmp_path)


def test_enhanced_ct_applies_each_frames_rescale(tmp_path):
    import highdicom as hd

    (tmp_path / "series").mkdir()
    files = write_ct_series(tmp_path / "series")
    image = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in files], series_instance_uid=pydicom.uid.generate_uid(),
        series_number=3, sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1)
    plain = read_volume(_save(image, tmp_path / "mf.dcm")).voxels
    for n, item in enumerate(image.PerFrameFunctionalGroupsSequence):  # one intercept per frame
        transform = Dataset()
        transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = 10 * n, 1, "HU"
        item.PixelValueTransformationSequence = [transform]
    shifted = read_volume(_save(image, tmp_path / "mf2.dcm"))
    frame_of_k = [int(np.argmin([abs(float(g.PlanePositionSequence[0].ImagePositionPatient[2]) - z)
                                 for g in image.PerFrameFunctionalGroupsSequence]))
                  for z in (ORIGIN[2] + k * THICKNESS for k in range(len(files)))]
    for k, n in enumerate(frame_of_k):
        np.testing.assert_allclose(shifted.voxels[k], plain[k] + 10 * n)
        assert shifted.dicom.slices[k].frame_number == n + 1


def _save(image, path: Path) -> Path:
    image.save_as(path)
    return path


def test_padding_range_limit_marks_the_outside_as_air(tmp_path):
    files = write_ct_series(tmp_path)

    def pad(ds, k):
        pixels = ds.pixel_array.copy()
        pixels[:2, :] = -3000 - np.arange(pixels.shape[1])  # a band of padding values -3000 .. -3019
        ds.PixelData = pixels.astype(np.int16).tobytes()
        ds.add_new(0x00280120, "SS", -3000)  # Pixel Padding Value (its VR follows Pixel Representation)
        ds.add_new(0x00280121, "SS", -3100)  # Pixel Padding Range Limit

    _rewrite(files, pad)
    volume = read_volume(tmp_path)
    assert (volume.voxels[:, :2, :] == -1024).all() and volume.voxels[:, 2:, :].min() > -1024
