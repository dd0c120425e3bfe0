"""``lesanet annotate``: one lesion box on a CT -> labels, similar lesions, and SR / JSON / Markdown reports."""

from __future__ import annotations

import argparse

from ._args import add_annotator_arguments, add_dicom_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "annotate",
        help="annotate a lesion box on a CT volume",
        description="Predicts the body part, type and attributes of the lesion in a box, retrieves similar "
        "reference lesions, and writes the reports asked for. Box conventions: --box-ijk are 0-based voxel "
        "indices as stored (I = column, J = row, K = slice), corners inclusive; --box-lps are LPS millimetres "
        "(x1, y1, x2, y2 on the axial plane at height z).",
    )
    parser.add_argument("volume", nargs="+", help="NIfTI / NRRD / MHA file, DICOM folder, DICOMDIR, or DICOM "
                        "file(s)")
    box = parser.add_mutually_exclusive_group(required=True)
    box.add_argument("--box-ijk", metavar="I1,J1,I2,J2,K")
    box.add_argument("--box-lps", metavar="X1,Y1,X2,Y2,Z")
    box.add_argument("--recist-ijk", metavar="I1,J1,I2,J2[,I3,J3,I4,J4],K",
                     help="a RECIST measurement instead of a box: the long axis' end points, optionally the short "
                     "axis', in voxel indices on slice K; the box is DeepLesion's (the diameters' tight box "
                     "padded by 5 pixels)")
    box.add_argument("--recist-lps", metavar="X1,Y1,X2,Y2[,X3,Y3,X4,Y4],Z",
                     help="the same measurement in LPS millimetres on the axial plane at height Z")
    add_annotator_arguments(parser)
    add_dicom_arguments(parser)
    parser.add_argument("--sr", metavar="OUT.dcm", help="write a DICOM SR (TID 1500)")
    parser.add_argument("--json", metavar="OUT.json", help="write the JSON report")
    parser.add_argument("--md", metavar="OUT.md", help="write the Markdown report")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..annotate import Annotator
    from ..console import format_result
    from ..fileio import check_writable
    from ..imaging import read_volume
    from ._args import check_checkpoint_file, parse_box, parse_numbers, volume_source

    box_ijk = parse_box("--box-ijk", args.box_ijk) if args.box_ijk else None
    box_lps = parse_box("--box-lps", args.box_lps) if args.box_lps else None
    recist_values = {name: parse_numbers(f"--{name.replace('_', '-')}", getattr(args, name))
                     for name in ("recist_ijk", "recist_lps") if getattr(args, name)}
    outputs = {name: getattr(args, name) for name in ("sr", "json", "md") if getattr(args, name)}
    for name, path in outputs.items():  # fail before the expensive work, not after it
        check_writable(path, f"--{name}", args.overwrite)
    if args.model is not None:
        check_checkpoint_file(args.model, "--model")
    volume = read_volume(volume_source(args.volume), series_uid=args.series_uid, allow_non_ct=args.allow_non_ct)
    annotator = Annotator(args.model, args.index, device=args.device, threshold_offset=args.threshold_offset,
                          top_k=args.top_k)
    result = annotator.annotate(volume, box_ijk=box_ijk, box_lps=box_lps,
                                recist=recist_argument(volume, recist_values))
    print(format_result(result))
    written = write_reports([result], volume, outputs, overwrite=args.overwrite,
                            disclaimer=demo_disclaimer() if args.model is None else None)
    for path in written:
        print(f"wrote {path}")
    return 0


def recist_argument(volume, values: dict):
    """The ``Recist`` of ``--recist-ijk`` / ``--recist-lps`` (None when neither was given)."""
    from ..imaging.recist import recist_from_lps, recist_from_values

    if "recist_ijk" in values:
        return recist_from_values("--recist-ijk", values["recist_ijk"])
    if "recist_lps" in values:
        flat = values["recist_lps"]
        if len(flat) not in (5, 9):
            from ..errors import invalid

            raise invalid("--recist-lps", "must be 5 or 9 numbers: x, y of 2 or 4 end points, then z", flat)
        z = flat[-1]
        points = [(flat[n], flat[n + 1], z) for n in range(0, len(flat) - 1, 2)]
        return recist_from_lps("--recist-lps", volume, points)
    return None


def demo_disclaimer() -> str:
    return "Demo model trained on phantoms; not for clinical use."


def write_reports(results, volume, outputs: dict, *, overwrite: bool, disclaimer: str | None) -> list[str]:
    """Writes the SR / JSON / Markdown named in ``outputs`` (keys ``sr``, ``json``, ``md``): all of them or none.

    Each report is written to a hidden file beside its target first; only when every one is complete are they
    renamed into place, so a failure in the last (say the SR) leaves no JSON or Markdown of a half-finished run.
    """
    import os
    from pathlib import Path

    from ..fileio import check_writable
    from ..report import write_dicom_sr, write_json_report, write_markdown_report

    writers = {
        "json": lambda path: write_json_report(results, path),
        "md": lambda path: write_markdown_report(results, path, disclaimer=disclaimer),
        "sr": lambda path: write_dicom_sr(results, path, volume=volume),
    }
    staged: list[tuple[str, Path, Path]] = []
    try:
        for name in ("json", "md", "sr"):
            if outputs.get(name):
                target = check_writable(outputs[name], f"--{name}", overwrite)
                staged.append((name, target.with_name(f".{target.name}.{os.getpid()}.staged"), target))
                writers[name](staged[-1][1])
        for name, temporary, target in staged:
            check_writable(target, f"--{name}", overwrite)  # a file that appeared meanwhile is still not clobbered
            os.replace(temporary, target)
    finally:
        for _, temporary, _ in staged:
            temporary.unlink(missing_ok=True)
    return [str(target) for _, _, target in staged]
