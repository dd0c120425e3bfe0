"""CT data pipeline: volumes in LPS, readers, the DeepLesion layout and LesaNet's input patches.

Modules:
    volume: ``Volume`` (float32 HU voxels with LPS geometry; exact IJK <-> LPS, RAS helpers).
    geometry: ``VolumeGeometry``, a volume's grid without its voxels (where boxes are placed away from the voxels).
    recist: RECIST measurements (long and short axis end points) -> the box DeepLesion derived from them.
    readers: ``read_volume`` for NIfTI / NRRD / MetaImage files (SimpleITK) and DICOM (dicom_volume).
    dicom_files, dicom_series, dicom_frames, dicom_geometry, dicom_volume: DICOM as archives write it -- file
        discovery and DICOMDIR, the series choice rule, frames and HU, the slice grid, ``DicomVolume``.
    patch: ``extract_patch`` and ``patch_from_slices`` (LesaNet preprocessing), ``normalize_patch``.
    deeplesion: ``read_dl_info``, ``read_png_slice``, ``load_lesion_patch`` for DeepLesion's layout.

Nothing here imports SimpleITK or PIL at import time.
"""

from __future__ import annotations

from .deeplesion import LesionRecord, load_lesion_patch, read_dl_info, read_png_slice, write_dl_info
from .patch import Patch, display_window, extract_patch, normalize_patch, patch_from_slices
from .readers import read_volume
from .volume import Volume

__all__ = [
    "LesionRecord",
    "Patch",
    "Volume",
    "display_window",
    "extract_patch",
    "load_lesion_patch",
    "normalize_patch",
    "patch_from_slices",
    "read_dl_info",
    "read_png_slice",
    "read_volume",
    "write_dl_info",
]
