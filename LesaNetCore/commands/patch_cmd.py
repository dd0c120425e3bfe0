"""``lesanet patch``: cut the LesaNet input patch around a lesion box and save it (and a preview)."""

from __future__ import annotations

import argparse

from ._args import add_dicom_arguments

_PREVIEW_SCALE = 3


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "patch",
        help="cut the 3 x 120 x 120 LesaNet patch around a lesion box",
        description=(
            "Reads a CT (NIfTI, NRRD, MHA, a DICOM folder, DICOMDIR or DICOM files), resamples it to LesaNet's input: 1 mm "
            "pixels, channels at -2, 0, +2 mm along z, window [-1024, 3071] HU -> 0..255, in DeepLesion's axial "
            "display orientation, and saves image, box and center_lps as .npz."
        ),
    )
    parser.add_argument("volume", nargs="+", help="image file, DICOM folder, DICOMDIR or DICOM file(s)")
    box = parser.add_mutually_exclusive_group(required=True)
    box.add_argument(
        "--box-ijk", metavar="I1,J1,I2,J2,K",
        help="0-based voxel indices as stored (I column, J row, K slice), corners inclusive",
    )
    box.add_argument("--box-lps", metavar="X1,Y1,X2,Y2,Z", help="LPS millimetres on the axial plane at height Z")
    parser.add_argument("--out", required=True, metavar="PATCH.npz", help="output .npz")
    parser.add_argument("--png", metavar="PREVIEW.png", help="also save the centre channel with the box drawn")
    add_dicom_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..fileio import atomic_path, check_writable
    from ..imaging.patch import extract_patch
    from ..imaging.readers import read_volume
    from ._args import parse_box, volume_source

    check_writable(args.out, "--out", args.overwrite)
    if args.png:
        check_writable(args.png, "--png", args.overwrite)
    if args.box_ijk is not None:
        box = {"box_ijk": parse_box("--box-ijk", args.box_ijk)}
    else:
        box = {"box_lps": parse_box("--box-lps", args.box_lps)}
    volume = read_volume(volume_source(args.volume), series_uid=args.series_uid, allow_non_ct=args.allow_non_ct)
    patch = extract_patch(volume, **box)
    with atomic_path(args.out, "--out", args.overwrite) as tmp, tmp.open("wb") as handle:
        np.savez(
            handle, image=patch.image, box=patch.box, center_lps=patch.center_lps,
            key_slice=np.int64(patch.key_slice), box_ijk=np.asarray(patch.box_ijk),
        )
    if args.png:
        _write_preview(args.png, patch, args.overwrite)
    x1, y1, x2, y2 = (round(float(v), 1) for v in patch.box)
    center = ", ".join(f"{v:.1f}" for v in patch.center_lps)
    print(f"patch: {args.out} (key slice {patch.key_slice}, centre LPS [{center}] mm, box in patch "
          f"[{x1}, {y1}, {x2}, {y2}] px)")
    if args.png:
        print(f"preview: {args.png}")
    return 0


def _write_preview(path: str, patch, overwrite: bool) -> None:
    """Centre channel, enlarged 3x for viewing, with the lesion box in red."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ..fileio import atomic_path

    grey = np.clip(np.round(patch.image[1]), 0, 255).astype(np.uint8)
    size = grey.shape[1] * _PREVIEW_SCALE, grey.shape[0] * _PREVIEW_SCALE
    image = Image.fromarray(grey).resize(size, Image.Resampling.NEAREST).convert("RGB")
    # Box corners are pixel-centre coordinates; pixel x's centre is at x * s + (s - 1) / 2 once enlarged.
    s = _PREVIEW_SCALE
    corners = [round(float(v) * s + (s - 1) / 2) for v in patch.box]
    ImageDraw.Draw(image).rectangle(corners, outline=(255, 0, 0), width=1)
    with atomic_path(path, "--png", overwrite) as tmp, tmp.open("wb") as handle:
        image.save(handle, format="PNG")
