"""Argument parsing shared by several subcommands."""

from __future__ import annotations

import math

from ..errors import LesaNetError, invalid


def parse_box(argument: str, text: str) -> tuple[float, ...]:
    """``"1,2,3,4,5"`` (``--box-ijk`` / ``--box-lps``) -> five finite floats; a clear error otherwise.

    Example:
        >>> parse_box("--box-lps", "-120.5, 30, -100, 52.5, 7")
        (-120.5, 30.0, -100.0, 52.5, 7.0)
    """
    values = parse_numbers(argument, text, "must be five comma-separated numbers")
    if len(values) != 5:
        raise invalid(argument, "must be five comma-separated numbers", text)
    return values


def parse_numbers(argument: str, text: str, rule: str = "must be comma-separated numbers") -> tuple[float, ...]:
    """``"1, 2.5, -3"`` -> finite floats; a clear error naming ``argument`` otherwise.

    Example:
        >>> parse_numbers("--recist-ijk", "233.5,95,234,107,109")
        (233.5, 95.0, 234.0, 107.0, 109.0)
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as err:
        raise invalid(argument, rule, text) from err
    if not all(math.isfinite(v) for v in values):
        raise invalid(argument, "must hold finite numbers (no nan or inf)", text)
    return values


def add_annotator_arguments(parser) -> None:
    """The options of an ``Annotator`` (model, index, retrieval, thresholds, device), shared by the commands."""
    parser.add_argument("--model", metavar="CKPT", help="checkpoint (default: the shipped demo model)")
    parser.add_argument("--index", metavar="DIR", help="reference index folder (default: the demo index with "
                        "the demo model, none otherwise)")
    parser.add_argument("--top-k", type=int, default=5, help="similar lesions to retrieve (default 5)")
    parser.add_argument("--threshold-offset", type=float, default=0.0, help="added to every threshold")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")


def add_dicom_arguments(parser) -> None:
    """``--series UID`` (alias ``--series-uid``) and ``--allow-non-ct``, for commands that read a volume."""
    parser.add_argument("--series", "--series-uid", dest="series_uid", metavar="UID",
                        help="SeriesInstanceUID to read where the DICOM input holds several series (default: the "
                        "axial CT series, ORIGINAL before DERIVED, with the most images, not a localizer)")
    parser.add_argument("--allow-non-ct", action="store_true",
                        help="also read a DICOM series of another modality (MR, PET ...); its values are not HU")


def volume_source(values: list[str]) -> str | list[str]:
    """The VOLUME argument(s): one path (a file, a folder, a DICOMDIR) as is, several DICOM files as a list."""
    return values[0] if len(values) == 1 else list(values)


# The first bytes of the files a checkpoint argument meets, and what to call them when they are not one.
_LOOKALIKES = ((b"\x1f\x8b", "a gzip file (a .nii.gz image?)"), (b"\x89PNG", "a PNG image"),
               (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF document"))


def check_checkpoint_file(path: str, argument: str) -> None:
    """Refuses, in plain words, a file that is not a PyTorch checkpoint at all, before torch tries to unpickle it.

    A checkpoint is what ``torch.save`` writes: a zip archive holding ``data.pkl`` (PyTorch >= 1.6) or a pickle
    stream (older PyTorch, the released LesaNet model). Whether it is a *LesaNet* checkpoint is decided by the
    loader; this only catches the wrong kind of file (a README, an image, a NIfTI volume).

    Raises:
        LesaNetError: the path is missing, a folder, empty, or another kind of file.
    """
    import os
    import zipfile

    if not os.path.exists(path):
        raise invalid(argument, "must be an existing checkpoint file (.pt)", path)
    if os.path.isdir(path):
        raise invalid(argument, "must be a checkpoint file (.pt), not a folder", path)
    with open(path, "rb") as handle:
        head = handle.read(132)
    if not head:
        raise invalid(argument, "must be a checkpoint, but the file is empty", path)
    if head.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("data.pkl") for name in archive.namelist()):
                return
        raise invalid(argument, "must be a checkpoint (written by torch.save), but this is a zip archive of "
                      "something else (no data.pkl inside)", path)
    if head[0] == 0x80 and 2 <= head[1] <= 5:  # a pickle stream: legacy torch.save
        return
    kind = next((name for magic, name in _LOOKALIKES if head.startswith(magic)), None)
    if kind is None and head[128:132] == b"DICM":
        kind = "a DICOM file"
    if kind is None and all(byte >= 32 or byte in b"\t\n\r" for byte in head):
        kind = f"a text file (it starts {head[:40].decode('utf-8', 'replace')!r})"
    kind = kind or "a binary file of another format"
    raise LesaNetError(f"{argument}: {path!r} is not a checkpoint at all, it is {kind}; a LesaNet checkpoint is a "
                       "file written by torch.save (best.pt from lesanet train, or lesanet import-official's output)")
