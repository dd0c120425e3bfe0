"""The 2D images of DICOM instances: where each one lies, what it is called, and its pixels in HU.

A *frame* is one 2D image: a classic single-frame instance (CT Image Storage) or one frame of a multi-frame one
(Enhanced CT, Legacy Converted Enhanced CT), whose geometry and rescale live in the per-frame and shared
functional group sequences. Everything after this module works on frames, so a multi-frame file and a folder of
single-frame files become the same volume.

Pixel values become HU here and nowhere else:

* pixels are decoded by pydicom with the pylibjpeg plugins LesaNetCore depends on (JPEG 2000 via openjpeg, JPEG
  baseline / extended / lossless and JPEG-LS via libjpeg), or natively (RLE, deflate, uncompressed); pydicom
  reads the pixel representation (signed or unsigned) and bits stored, so unused high bits never leak in;
* the frame's own Rescale Slope / Intercept is applied (they may differ from slice to slice);
* stored values equal to Pixel Padding Value (or within Pixel Padding Value .. Pixel Padding Range Limit) mark
  pixels outside the reconstructed field of view; they become -1024 HU (air, the bottom of LesaNet's HU window)
  so the circle around the field of view is neither tissue nor a false edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LesaNetError

# HU given to padding pixels (outside the field of view): air, the lower end of the [-1024, 3071] window.
PADDING_HU = -1024.0
_DECODER_HINT = ("the decoders come with LesaNetCore (pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg "
                 "restores them)")


@dataclass(frozen=True)
class FrameRef:
    """One 2D source image: its file, DICOM identity, geometry and rescale.

    Attributes:
        path: the file holding it.
        sop_class_uid, sop_instance_uid: the instance's UIDs (None when neither the dataset nor the file meta
            has them).
        frame_number: 1-based frame number within a multi-frame instance; None for a single-frame instance.
        position: Image Position (Patient), LPS mm of the centre of the first pixel; None when absent.
        orientation: Image Orientation (Patient), row then column direction cosines; None when absent.
        pixel_spacing: (between rows, between columns) in mm, DICOM order; None when absent.
        rows, columns: the image size.
        slope, intercept: the rescale to HU.
        thickness: Slice Thickness in mm, or None.
        instance_number: Instance Number (None when absent), only for stable ordering of duplicates.
    """

    path: str
    sop_class_uid: str | None
    sop_instance_uid: str | None
    frame_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    slope: float = 1.0
    intercept: float = 0.0
    thickness: float | None = None
    instance_number: int | None = None

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the image plane (row direction x column direction)."""
        o = np.asarray(self.orientation, dtype=float)
        n = np.cross(o[:3], o[3:])
        return n / np.linalg.norm(n)

    def describe(self) -> str:
        return self.path if self.frame_number is None else f"{self.path} frame {self.frame_number}"


def frames_of(path: str, ds: Any) -> list[FrameRef]:
    """The frames of one instance's header (pixel-free dataset), in frame order.

    Raises:
        LesaNetError: the instance is not a greyscale image or its geometry attributes are malformed.
    """
    if "Rows" not in ds or "Columns" not in ds:
        raise LesaNetError(f"{path}: must be an image (Rows, Columns and Pixel Data), but got SOP class "
                           f"{sop_class_name(_uid(ds, 'SOPClassUID'))} without an image")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise LesaNetError(f"{path}: must be a greyscale image (Samples per Pixel 1), but got {samples} samples "
                           f"({ds.get('PhotometricInterpretation', '?')}), a colour picture rather than CT")
    count = _int(ds.get("NumberOfFrames"), 1)
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    common = dict(path=path, sop_class_uid=_uid(ds, "SOPClassUID"), sop_instance_uid=_uid(ds, "SOPInstanceUID"),
                  rows=int(ds.Rows), columns=int(ds.Columns), instance_number=_int(ds.get("InstanceNumber"), None))
    if per_frame is None and shared is None:  # a classic instance: one geometry for all its frames
        geometry = _geometry(path, ds, ds, ds, ds)
        numbers = [None] if count == 1 else range(1, count + 1)
        return [FrameRef(frame_number=n, **geometry, **common) for n in numbers]
    if per_frame is not None and len(per_frame) != count:
        raise LesaNetError(f"{path}: Per-frame Functional Groups Sequence must have one item per frame "
                           f"({count}), but got {len(per_frame)}")
    frames = []
    for n in range(count):
        item = per_frame[n] if per_frame is not None else None
        group = {key: _group(item, shared, key) for key in
                 ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
                  "PixelValueTransformationSequence")}
        geometry = _geometry(f"{path} frame {n + 1}", group["PlanePositionSequence"],
                             group["PlaneOrientationSequence"], group["PixelMeasuresSequence"],
                             group["PixelValueTransformationSequence"] or ds)
        frames.append(FrameRef(frame_number=n + 1, **geometry, **common))
    return frames


def decode_frames(path: str, frames: Sequence[FrameRef]) -> np.ndarray:
    """HU (float32, frames x rows x columns) of ``frames``, all from the file ``path``.

    Raises:
        LesaNetError: the pixel data is missing, cannot be decoded (naming the transfer syntax and the decoders
            it needs) or does not match Rows x Columns x Number of Frames.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except (OSError, EOFError, ValueError, pydicom.errors.InvalidDicomError) as err:
        raise LesaNetError(f"{path}: must be a readable DICOM file, but reading it failed ({err})") from err
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise LesaNetError(f"{path}: must hold Pixel Data (7FE0,0010) to be read as an image, but has none")
    syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    syntax_name = getattr(syntax, "name", str(syntax))
    try:
        stored = np.asarray(ds.pixel_array)
    except (RuntimeError, NotImplementedError, ValueError, AttributeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise LesaNetError(f"{path}: pixel data in {syntax_name} must be decodable, but decoding failed ({reason}); "
                           f"{_DECODER_HINT}") from err
    count = _int(ds.get("NumberOfFrames"), 1)
    stored = stored.reshape((count, int(ds.Rows), int(ds.Columns)))
    padding = _padding_mask(ds, stored)
    out = np.empty((len(frames),) + stored.shape[1:], np.float32)
    for index, frame in enumerate(frames):
        n = 0 if frame.frame_number is None else frame.frame_number - 1
        hu = stored[n].astype(np.float64) * frame.slope + frame.intercept
        if padding is not None:
            hu[padding[n]] = PADDING_HU
        out[index] = hu
    return out


def _padding_mask(ds: Any, stored: np.ndarray) -> np.ndarray | None:
    if "PixelPaddingValue" not in ds:
        return None
    low = _number(ds.PixelPaddingValue)
    high = _number(ds.get("PixelPaddingRangeLimit"))
    if low is None:
        return None
    if high is None:
        return stored == low
    low, high = min(low, high), max(low, high)
    return (stored >= low) & (stored <= high)


def _geometry(where: str, position_item: Any, orientation_item: Any, measures_item: Any,
              rescale_item: Any) -> dict[str, Any]:
    position = _floats(where, "ImagePositionPatient", _get(position_item, "ImagePositionPatient"), 3)
    orientation = _floats(where, "ImageOrientationPatient", _get(orientation_item, "ImageOrientationPatient"), 6)
    if orientation is not None:
        o = np.asarray(orientation)
        if not (abs(np.linalg.norm(o[:3]) - 1) < 1e-2 and abs(np.linalg.norm(o[3:]) - 1) < 1e-2
                and abs(float(o[:3] @ o[3:])) < 1e-2):
            raise LesaNetError(f"{where}: ImageOrientationPatient must be two orthogonal unit vectors, but got "
                               f"{list(orientation)}")
        # Written with 4-6 decimals, the cosines are unit and orthogonal only to ~1e-5; made exact here so that
        # volume geometry and the SR's projection onto the image agree to the last digit.
        row = o[:3] / np.linalg.norm(o[:3])
        column = o[3:] - (o[3:] @ row) * row
        orientation = (*row.tolist(), *(column / np.linalg.norm(column)).tolist())
    spacing = _floats(where, "PixelSpacing", _get(measures_item, "PixelSpacing"), 2)
    if spacing is not None and not all(v > 0 for v in spacing):
        raise LesaNetError(f"{where}: PixelSpacing must be positive, but got {list(spacing)}")
    slope = _number(_get(rescale_item, "RescaleSlope"))
    intercept = _number(_get(rescale_item, "RescaleIntercept"))
    if slope == 0:
        raise LesaNetError(f"{where}: RescaleSlope must not be zero, but got 0")
    thickness = _number(_get(measures_item, "SliceThickness"))
    return dict(position=position, orientation=orientation, pixel_spacing=spacing,
                slope=1.0 if slope is None else slope, intercept=0.0 if intercept is None else intercept,
                thickness=thickness if thickness and thickness > 0 else None)


def _group(item: Any, shared: Any, keyword: str) -> Any:
    """The first item of a functional group macro, per-frame first, then shared."""
    for source in (item, shared):
        if source is not None and keyword in source:
            found = _first(source.get(keyword))
            if found is not None:
                return found
    return None


def _get(item: Any, keyword: str) -> Any:
    return None if item is None else item.get(keyword)


def _first(sequence: Any) -> Any:
    return sequence[0] if sequence else None


def _floats(where: str, keyword: str, value: Any, count: int) -> tuple[float, ...] | None:
    if value is None or value == "":
        return None
    try:
        numbers = tuple(float(v) for v in (value if isinstance(value, Sequence) and not isinstance(value, str)
                                           else [value]))
    except (TypeError, ValueError) as err:
        raise LesaNetError(f"{where}: {keyword} must be {count} numbers, but got {value!r}") from err
    if len(numbers) != count or not all(np.isfinite(numbers)):
        raise LesaNetError(f"{where}: {keyword} must be {count} finite numbers, but got {list(numbers)}")
    return numbers


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) else None


def _int(value: Any, default: int | None) -> int | None:
    number = _number(value)
    return default if number is None else int(number)


def _uid(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    return (str(value).strip() or None) if value is not None else None


def sop_class_name(uid: str | None) -> str:
    """The registered name of a SOP class UID (``"CT Image Storage"``), or the UID itself."""
    if not uid:
        return "(no SOP Class UID)"
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid


__all__ = ["PADDING_HU", "FrameRef", "decode_frames", "frames_of", "sop_class_name"]

