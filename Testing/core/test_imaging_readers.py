"""Readers: NIfTI / NRRD / MHA files and DICOM series folders, and the errors users see for bad input."""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging.readers import check_ct_like, read_volume
from LesaNetCore.imaging.volume import Volume


def _ct_array(shape=(6, 12, 10), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1200, size=shape).astype(np.int16)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_image_files_round_trip(tmp_path, suffix):
    hu = _ct_array()
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-100.0, 50.0, 12.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    volume = read_volume(path)
    assert volume.voxels.dtype == np.float32
    np.testing.assert_array_equal(volume.voxels, hu.astype(np.float32))
    np.testing.assert_allclose(volume.spacing, (0.7, 0.8, 2.5), rtol=1e-6)
    np.testing.assert_allclose(volume.origin, (-100.0, 50.0, 12.0), atol=1e-4)
    np.testing.assert_allclose(volume.direction, np.diag([-1.0, -1.0, 1.0]), atol=1e-6)
    assert volume.source == str(path) and volume.slice_files is None


def _write_series(folder, hu: np.ndarray, *, spacing=(0.75, 0.75), interval=2.5, series_uid=None,
                  shuffle=False, transfer_syntax=ExplicitVRLittleEndian, positions=None) -> str:
    """A CT series as pydicom writes it: stored = HU + 1024, RescaleIntercept -1024, one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    order = np.random.default_rng(1).permutation(len(hu)) if shuffle else range(len(hu))
    for n in order:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = transfer_syntax
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality = "CT"
        ds.PatientID, ds.PatientName = "TEST", "Test^Patient"
        ds.InstanceNumber = int(n) + 1
        z = -100.0 + n * interval if positions is None else positions[n]
        ds.ImagePositionPatient = [-50.0, -60.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = interval
        ds.Rows, ds.Columns = hu.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        stored = (hu[n].astype(np.int32) + 1024).astype(np.uint16)
        if transfer_syntax == JPEG2000Lossless:
            ds.PixelData = _jpeg2000(stored, folder)
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"{series_uid[-6:]}_{n:03d}.dcm", enforce_file_format=True)
    return series_uid


def _jpeg2000(stored: np.ndarray, folder) -> bytes:
    """Encapsulated JPEG 2000 pixel data, encoded by SimpleITK/GDCM (pydicom cannot encode it alone)."""
    scratch = folder.parent / "j2k_scratch.dcm"
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(scratch))
    writer.SetUseCompression(True)
    writer.SetCompressor("JPEG2000")
    writer.Execute(sitk.GetImageFromArray(stored))
    encoded = pydicom.dcmread(scratch)
    assert encoded.file_meta.TransferSyntaxUID == JPEG2000Lossless
    scratch.unlink()
    return encoded.PixelData


def test_dicom_series_applies_rescale_and_orders_slices(tmp_path):
    hu = _ct_array()
    _write_series(tmp_path / "series", hu, shuffle=True)
    volume = read_volume(tmp_path / "series")
    np.testing.assert_array_equal(volume.voxels, hu.astype(np.float32))
    np.testing.assert_allclose(volume.spacing, (0.75, 0.75, 2.5), rtol=1e-6)
    np.testing.assert_allclose(volume.origin, (-50.0, -60.0, -100.0))
    assert len(volume.slice_files) == len(hu)
    # slice_files[k] is the file of slice k: its position is slice k's.
    for k, name in enumerate(volume.slice_files):
        assert float(pydicom.dcmread(name, stop_before_pixels=True).ImagePositionPatient[2]) == -100.0 + 2.5 * k


def test_dicom_series_in_jpeg2000(tmp_path):
    hu = _ct_array(shape=(4, 16, 16))
    _write_series(tmp_path / "series", hu, transfer_syntax=JPEG2000Lossless)
    assert pydicom.dcmread(next((tmp_path / "series").iterdir())).file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_array_equal(read_volume(tmp_path / "series").voxels, hu.astype(np.float32))


def test_folder_with_two_series_reads_the_largest_or_the_named_one(tmp_path):
    big, small = _ct_array(shape=(6, 8, 8), seed=1), _ct_array(shape=(3, 8, 8), seed=2)
    big_uid = _write_series(tmp_path / "both", big)
    small_uid = _write_series(tmp_path / "both", small, interval=5.0)
    np.testing.assert_array_equal(read_volume(tmp_path / "both").voxels, big.astype(np.float32))
    chosen = read_volume(tmp_path / "both", series_uid=small_uid)
    np.testing.assert_array_equal(chosen.voxels, small.astype(np.float32))
    assert chosen.spacing[2] == pytest.approx(5.0)
    with pytest.raises(LesaNetError, match=r"series_uid \(--series\)") as info:
        read_volume(tmp_path / "both", series_uid="1.2.3.4")
    assert big_uid in str(info.value) and small_uid in str(info.value) and "1.2.3.4" in str(info.value)


def test_dicom_series_with_a_missing_slice_is_resampled(tmp_path, caplog):
    positions = [0.0, 2.5, 5.0, 10.0, 12.5]
    hu = _ct_array(shape=(5, 8, 8))
    _write_series(tmp_path / "gap", hu, positions=positions)
    with caplog.at_level(logging.WARNING, logger="LesaNetCore.imaging.dicom"):
        volume = read_volume(tmp_path / "gap")
    assert volume.voxels.shape == (6, 8, 8) and volume.spacing[2] == pytest.approx(2.5)
    np.testing.assert_array_equal(volume.voxels[[0, 1, 2, 4, 5]], hu.astype(np.float32))
    np.testing.assert_allclose(volume.voxels[3], (hu[2] + hu[3]) / 2.0, atol=1e-3)  # the missing slice, halfway
    assert volume.dicom.slices[3] is None and volume.slice_files is None
    assert any("resampled onto a uniform grid" in r.message for r in caplog.records)


def test_dicom_series_with_a_block_missing_is_rejected(tmp_path):
    _write_series(tmp_path / "hole", _ct_array(shape=(4, 8, 8)), positions=[0.0, 2.5, 15.0, 17.5])
    with pytest.raises(LesaNetError, match="at most 3 times the series. spacing"):
        read_volume(tmp_path / "hole")


def test_single_dicom_slice_is_a_one_slice_volume(tmp_path, caplog):
    hu = _ct_array(shape=(1, 8, 8))
    _write_series(tmp_path / "one", hu)
    with caplog.at_level(logging.WARNING, logger="LesaNetCore.imaging.dicom"):
        volume = read_volume(next((tmp_path / "one").iterdir()))
    assert volume.voxels.shape == (1, 8, 8) and volume.spacing[2] == pytest.approx(2.5)  # Slice Thickness
    np.testing.assert_array_equal(volume.voxels[0], hu[0])
    assert any("a single slice" in r.message for r in caplog.records)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LesaNetError, match="must hold DICOM image files"):
        read_volume(tmp_path)


def test_missing_and_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(LesaNetError, match="must be an existing"):
        read_volume(tmp_path / "nothing.nii.gz")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not an image")
    with pytest.raises(LesaNetError, match="cannot be read") as info:
        read_volume(broken)
    assert str(broken) in str(info.value)


def test_2d_image_is_rejected(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(_ct_array(shape=(12, 10))), str(path))
    with pytest.raises(LesaNetError, match="3D") as info:
        read_volume(path)
    assert str(path) in str(info.value)
    single = tmp_path / "single.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_ct_array(shape=(1, 12, 10))), str(single))
    with pytest.raises(LesaNetError, match="3D"):
        read_volume(single)


def test_nan_voxels_are_rejected(tmp_path):
    hu = _ct_array().astype(np.float32)
    hu[2, 3, 4] = np.nan
    path = tmp_path / "nan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(path))
    with pytest.raises(LesaNetError, match="finite") as info:
        read_volume(path)
    assert str(path) in str(info.value) and "1 non-finite" in str(info.value)


def test_zero_spacing_is_rejected(tmp_path):
    raw = tmp_path / "ct.raw"
    _ct_array().tofile(raw)
    header = tmp_path / "ct.mhd"
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 10 12 6\nElementSpacing = 1 0 2\nElementType = MET_SHORT\n"
        "ElementDataFile = ct.raw\n"
    )
    with pytest.raises(LesaNetError, match="spacing") as info:
        read_volume(header)
    assert str(header) in str(info.value)


def test_multicomponent_image_is_rejected(tmp_path):
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.int16), isVector=True), str(path))
    with pytest.raises(LesaNetError, match="one value per voxel"):
        read_volume(path)


def test_non_ct_values_are_rejected(tmp_path):
    grey = tmp_path / "grey.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (4, 8, 8), dtype=np.uint8)),
                    str(grey))
    with pytest.raises(LesaNetError, match="8-bit"):
        read_volume(grey)
    wide = np.random.default_rng(0).integers(0, 256, (4, 8, 8)).astype(np.int16)
    with pytest.raises(LesaNetError, match="0..255"):
        check_ct_like(wide.astype(np.float32), "wide.nii")
    with pytest.raises(LesaNetError, match="-500"):
        check_ct_like(np.full((4, 4, 4), -1000.0, np.float32), "air.nii")
    # A crop of soft tissue only is still CT.
    check_ct_like(np.full((4, 4, 4), 45.5, np.float32), "liver.nii")
    check_ct_like(_ct_array().astype(np.float32), "ct.nii")


def test_series_uid_on_an_image_file_is_an_error(tmp_path):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_ct_array()), str(path))
    assert isinstance(read_volume(path), Volume)
    with pytest.raises(LesaNetError, match="series_uid"):
        read_volume(path, series_uid="1.2.3")
