"""Exports of annotation results: DICOM SR TID 1500 (highdicom), JSON and Markdown.

Modules: ``codes`` (the coded concepts the SR uses, and why), ``sr`` (write the SR), ``sr_read`` (read TID 1500
groups back), ``json_report`` (lossless JSON, documented schema), ``markdown`` (readable report). highdicom and
pydicom are imported only when an SR is written or read.
"""

from __future__ import annotations

from .json_report import read_json_report, write_json_report
from .markdown import markdown_report, write_markdown_report
from .sr import non_dicom_warning, write_dicom_sr
from .sr_read import read_dicom_sr

__all__ = [
    "markdown_report",
    "non_dicom_warning",
    "read_dicom_sr",
    "read_json_report",
    "write_dicom_sr",
    "write_json_report",
    "write_markdown_report",
]
