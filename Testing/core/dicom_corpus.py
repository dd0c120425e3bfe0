"""Helpers of the DICOM corpus test: a real CT written as a DICOM series, and the variants archives produce.

The real CT is ``../shared/data/ct/upper_abdomen_ct.nii.gz`` (TotalSegmentator's test CT, 30 slices of 3 mm),
resampled into DICOM's display orientation (columns to the patient's left, rows to posterior) and written as CT
Image Storage files the way scanners do: 12 bits stored in 16, unsigned, Rescale Intercept -1024. Every variant
is made from those files with the tool that makes it in practice: pydicom's encoders (JPEG 2000 via openjpeg,
JPEG-LS via pyjpegls, RLE, deflate), DCMTK's ``dcmcjpeg`` for the JPEG family (baseline, extended, lossless),
highdicom's legacy converter for multi-frame Enhanced CT.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REAL_CT = "ct/upper_abdomen_ct.nii.gz"
PIXEL_SPACING = 3.0  # the NIfTI's in-plane spacing (row and column)


def real_ct_display(nifti: Path) -> tuple[np.ndarray, tuple[float, float, float], float]:
    """HU (K, rows, columns) of the NIfTI in DICOM display orientation, the LPS of its first pixel, slice gap."""
    from LesaNetCore.imaging import read_volume

    volume = read_volume(nifti)
    direction = np.round(volume.direction).astype(int)
    assert np.array_equal(np.abs(direction), np.eye(3, dtype=int)), "the shared CT is axis-aligned"
    voxels = volume.voxels
    flip = [False, direction[1, 1] < 0, direction[0, 0] < 0]  # K as is; J, I reversed where they run to -y / -x
    corner = [0, 0, 0]
    if flip[2]:
        voxels, corner[0] = voxels[:, :, ::-1], volume.size_ijk[0] - 1
    if flip[1]:
        voxels, corner[1] = voxels[:, ::-1, :], volume.size_ijk[1] - 1
    origin = tuple(float(v) for v in volume.ijk_to_lps(corner))
    return np.ascontiguousarray(np.round(voxels)).astype(np.int32), origin, float(volume.spacing[2])


def write_series(folder: Path, hu: np.ndarray, origin, interval: float, *, positions=None, orientation=(1, 0, 0, 0, 1, 0),
                 signed: bool = False, slope: float = 1.0, intercept: float = -1024.0, padding=None,
                 study_uid: str | None = None, frame_uid: str | None = None, series_number: int = 2,
                 description: str = "ABDOMEN 3mm", image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
                 thickness: float | None = None) -> list[Path]:
    """Writes ``hu`` (K, rows, columns) as one CT Image Storage file per slice; returns the files in K order.

    ``positions`` (K x 3) overrides the default stack (``origin`` + k * ``interval`` along z). ``padding`` is a
    (rows, columns) mask of pixels outside the field of view, stored as Pixel Padding Value -2000 (signed only).
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, frame_uid, series_uid = study_uid or generate_uid(), frame_uid or generate_uid(), generate_uid()
    bits = 16 if signed else 12
    files = []
    for k, image in enumerate(hu):
        stored = np.round((image.astype(np.float64) - intercept) / slope)
        if signed:
            stored = np.clip(stored, -32768, 32767).astype(np.int16)
            if padding is not None:
                stored[padding] = -2000
        else:
            stored = np.clip(stored, 0, 2**bits - 1).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Anon^Abdomen", "TS0001", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20200101", "120000", "", "1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "CT", "Corpus", series_number, k + 1
        ds.SeriesDescription = description
        ds.ImageType = list(image_type)
        ds.PositionReferenceIndicator, ds.PatientPosition = "", "HFS"
        position = [origin[0], origin[1], origin[2] + k * interval] if positions is None else list(positions[k])
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
        ds.PixelSpacing = [PIXEL_SPACING, PIXEL_SPACING]
        ds.SliceThickness = thickness or interval
        ds.KVP, ds.AcquisitionNumber = 120, 1
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, int(signed)
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, slope, "HU"
        if signed and padding is not None:
            ds.PixelPaddingValue = -2000
        ds.PixelData = stored.tobytes()
        path = folder / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def expected_hu(files: list[Path]) -> np.ndarray:
    """HU of the written files as a reader must give them (padding -> -1024), slice by slice."""
    out = []
    for path in files:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
        hu = stored.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        if "PixelPaddingValue" in ds:
            hu[stored == ds.PixelPaddingValue] = -1024.0
        out.append(hu)
    return np.asarray(out, np.float32)


def copy_series(files: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in files:
        shutil.copy2(path, folder / path.name)
        out.append(folder / path.name)
    return out


def rewrite(files: list[Path], folder: Path, change) -> list[Path]:
    """Copies of ``files`` in ``folder`` after ``change(ds, k)`` (which may return a new file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        name = change(ds, k) or path.name
        target = folder / name
        ds.save_as(target, enforce_file_format=False)
        out.append(target)
    return out


def compress_pydicom(files: list[Path], folder: Path, syntax, **options) -> list[Path]:
    """The series re-encoded by pydicom (openjpeg, pyjpegls or its own RLE / deflate)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    def change(ds, k):
        if syntax == DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = syntax
        else:
            ds.compress(syntax, **options)

    return rewrite(files, folder, change)


def compress_dcmtk(files: list[Path], folder: Path, option: str) -> list[Path]:
    """The series re-encoded by DCMTK's dcmcjpeg (``+eb`` baseline, ``+ee`` extended, ``+e1`` / ``+el``
    lossless); lossy encodings get new SOP Instance UIDs, as DCMTK (and the standard) do."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in files:
        target = folder / path.name
        subprocess.run(["dcmcjpeg", option, str(path), str(target)], check=True, capture_output=True, timeout=60)
        out.append(target)
    return out


def blank_uids(files: list[Path], folder: Path, *, meta_too: bool = False) -> list[Path]:
    """The anonymiser's habit: SOP Class / Instance UID emptied in the dataset (and, with ``meta_too``, gone
    from the file meta as well)."""
    def change(ds, k):
        ds.SOPClassUID = ""
        ds.SOPInstanceUID = ""
        if meta_too:
            del ds.file_meta.MediaStorageSOPClassUID
            del ds.file_meta.MediaStorageSOPInstanceUID

    return rewrite(files, folder, change)


def shuffled(files: list[Path], folder: Path, seed: int = 3) -> list[Path]:
    """Files renamed in a random order and Instance Numbers scrambled: only positions tell the order."""
    order = np.random.default_rng(seed).permutation(len(files))

    def change(ds, k):
        ds.InstanceNumber = int(order[k]) + 1
        return f"X{order[k]:04d}.dcm"

    return rewrite(files, folder, change)


def localizer(folder: Path, study_uid: str, frame_uid: str, columns: int, rows: int) -> list[Path]:
    """A two-image scout (coronal and sagittal projections, Image Type LOCALIZER) in the same study."""
    files = []
    series_uid = generate_uid()
    for n, orientation in enumerate(([1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1])):
        hu = np.full((1, 64, 64), -1000, np.int32)
        hu[0, 10:54, 20:44] = 40
        path = write_series(folder / f"loc{n}", hu, (-200.0, -200.0, 100.0), 1.0, orientation=orientation,
                            study_uid=study_uid, frame_uid=frame_uid, series_number=1, description="Topogram",
                            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))[0]
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, n + 1
        target = folder / f"LOC{n}.dcm"
        ds.save_as(target)
        shutil.rmtree(folder / f"loc{n}")
        files.append(target)
    return files


def dose_report(folder: Path, study_uid: str) -> list[Path]:
    """A CT dose report as scanners add it: an X-Ray Radiation Dose SR and a secondary-capture screenshot."""
    folder.mkdir(parents=True, exist_ok=True)
    sr_class, sc_class = "1.2.840.10008.5.1.4.1.1.88.67", "1.2.840.10008.5.1.4.1.1.7"
    out = []
    for name, sop_class, modality in (("DOSE_SR.dcm", sr_class, "SR"), ("DOSE_SC.dcm", sc_class, "CT")):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study_uid, generate_uid(), modality
        ds.PatientID, ds.PatientName, ds.SeriesDescription = "TS0001", "Anon^Abdomen", "Dose Report"
        if sop_class == sc_class:
            ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 48, 3, "RGB"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.PlanarConfiguration = 8, 8, 7, 0, 0
            ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
            ds.PixelData = np.full((32, 48, 3), 200, np.uint8).tobytes()
        else:
            ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
        ds.save_as(folder / name, enforce_file_format=True)
        out.append(folder / name)
    return out


def multiframe(files: list[Path], target: Path) -> Path:
    """The series converted to one Legacy Converted Enhanced CT Image (highdicom's converter)."""
    import highdicom as hd

    datasets = [pydicom.dcmread(p) for p in files]
    image = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=generate_uid(), series_number=5,
        sop_instance_uid=generate_uid(), instance_number=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save_as(target)
    return target


def mislabelled_mr(folder: Path, *, sop_class_too: bool) -> list[Path]:
    """pydicom's real MR slice (MR_small.dcm) with Modality CT (and, with ``sop_class_too``, CT Image Storage
    and a rescale), the mislabelling a wrong DICOM router or export produces."""
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.Modality = "CT"
    if sop_class_too:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    target = folder / "MR_as_CT.dcm"
    ds.save_as(target)
    return [target]


def frame_at(multiframe_file: Path, slice_file: Path) -> int:
    """The 1-based frame of ``multiframe_file`` at ``slice_file``'s position (converters reorder frames)."""
    target = np.asarray(pydicom.dcmread(slice_file, stop_before_pixels=True).ImagePositionPatient, float)
    groups = pydicom.dcmread(multiframe_file, stop_before_pixels=True).PerFrameFunctionalGroupsSequence
    distances = [np.linalg.norm(np.asarray(g.PlanePositionSequence[0].ImagePositionPatient, float) - target)
                 for g in groups]
    return int(np.argmin(distances)) + 1


def key_uid(path: Path) -> str:
    """The SOP Instance UID a reader must find for ``path``: the dataset's, else the file meta's."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.get("SOPInstanceUID") or "") or str(ds.file_meta.MediaStorageSOPInstanceUID)


def with_uid(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    out.SOPInstanceUID = generate_uid()
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    return out
