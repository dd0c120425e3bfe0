"""The end-to-end demo on the embedded default: a phantom CT made on the fly, the shipped demo model and
reference index, annotations of its lesions, the reports and a figure.

The demo model is trained on phantoms made by this project (see LesaNetCore/data/demo/README.md); it shows how
the tool behaves and is not for clinical use. Outputs go to one folder; the demo replaces only files of an
earlier demo run there (it marks its folder) and refuses to write into a folder holding anything else.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LesaNetError

DISCLAIMER = "Demo model trained on phantoms made by this project; not for clinical use."
_MARKER = ".lesanet-demo"
_OUTPUTS = ("phantom_ct.nii.gz", "report.json", "report.md", "report_sr.dcm", "figure.png", _MARKER)
# The phantom's lesions: body parts a radiologist would expect the demo to tell apart.
DEMO_BODYPARTS = ("liver", "right kidney", "spleen")


@dataclass(frozen=True)
class DemoRun:
    """What :func:`run_demo` produced."""

    out_dir: Path
    results: list
    truth: list[tuple[str, ...]]
    files: list[Path]
    seconds: float


def _prepare_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise LesaNetError(f"--out: must be a folder, but got the file {str(out_dir)!r}")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in _OUTPUTS)
        if foreign and not (out_dir / _MARKER).exists():
            raise LesaNetError(f"--out: must be empty or an earlier demo folder, but {str(out_dir)!r} holds "
                               f"{foreign[:3]}")
        if foreign:
            raise LesaNetError(f"--out: the demo folder {str(out_dir)!r} also holds files the demo did not write "
                               f"({foreign[:3]}); move them or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / _MARKER).write_text("Written by `lesanet demo`; its files are replaced on the next run.\n")


def demo_volume(seed: int = 7):
    """The phantom CT of the demo and its lesions (truth and boxes)."""
    from .imaging import Volume
    from .phantom import make_phantom_volume

    voxels, spacing, origin, direction, lesions = make_phantom_volume(
        seed=seed, region="abdomen", n_lesions=len(DEMO_BODYPARTS), bodyparts=list(DEMO_BODYPARTS))
    volume = Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3),
                    source=f"phantom_ct.nii.gz (phantom made on the fly, seed {seed})")
    return volume, lesions


def run_demo(out_dir: str | os.PathLike = "demo_out", seed: int = 7, device: str = "auto",
             echo=print) -> DemoRun:
    """Runs the demo and writes its outputs into ``out_dir`` (see the module docstring)."""
    import SimpleITK as sitk

    from .annotate import Annotator
    from .console import format_result
    from .fileio import atomic_path
    from .report import write_dicom_sr, write_json_report, write_markdown_report

    started = time.perf_counter()
    out_dir = Path(out_dir)
    _prepare_folder(out_dir)
    echo(f"LesaNet demo. {DISCLAIMER}")
    volume, lesions = demo_volume(seed)
    with atomic_path(out_dir / "phantom_ct.nii.gz", "--out", overwrite=True) as tmp:
        # int16 HU: a quarter of the float32 file, and what CT viewers expect.
        sitk.WriteImage(sitk.Cast(sitk.Round(volume.to_sitk()), sitk.sitkInt16), str(tmp.with_suffix(".nii.gz")))
        os.replace(tmp.with_suffix(".nii.gz"), tmp)
    annotator = Annotator(device=device)
    results = annotator.annotate_many(volume, boxes_ijk=[lesion.box_ijk for lesion in lesions])
    truth = [tuple(lesion.spec.labels) for lesion in lesions]
    for n, (result, labels) in enumerate(zip(results, truth, strict=True), start=1):
        echo(f"\n=== Lesion {n} (phantom truth: {', '.join(labels)}) ===")
        echo(format_result(result))
    files = [
        write_json_report(results, out_dir / "report.json", overwrite=True),
        write_markdown_report(results, out_dir / "report.md", overwrite=True, title="LesaNet demo report",
                              disclaimer=DISCLAIMER),
        write_dicom_sr(results, out_dir / "report_sr.dcm", volume=volume, overwrite=True),
        write_demo_figure(results, truth, out_dir / "figure.png"),
    ]
    files.insert(0, out_dir / "phantom_ct.nii.gz")
    seconds = time.perf_counter() - started
    echo(f"\nWrote {', '.join(str(f) for f in files)} in {seconds:.1f} s. {DISCLAIMER}")
    return DemoRun(out_dir, results, truth, files, seconds)


def write_demo_figure(results, truth, path: Path, overwrite: bool = True) -> Path:
    """One row per lesion: the patch with its box, the top labels as score bars, the similar lesions."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from .fileio import atomic_path
    from .imaging import display_window

    n_similar = max((len(r.similar) for r in results), default=0)
    columns = 2 + min(n_similar, 4)
    fig = Figure(figsize=(3.2 * columns, 3.4 * len(results)), dpi=100)
    fig.suptitle(f"LesaNet demo. {DISCLAIMER}", fontsize=10)
    for row, (result, labels) in enumerate(zip(results, truth, strict=True)):
        ax = fig.add_subplot(len(results), columns, row * columns + 1)
        ax.imshow(display_window(result.patch_image[1]), cmap="gray", vmin=0, vmax=255)
        x1, y1, x2, y2 = result.patch_box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=1.5))
        ax.set_title(f"Lesion {row + 1}: {result.top_finding()}", fontsize=9)
        ax.set_xlabel("truth: " + ", ".join(labels[:4]), fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
        bars = fig.add_subplot(len(results), columns, row * columns + 2)
        top = sorted(result.labels, key=lambda x: -x.score)[:10][::-1]
        colours = ["tab:green" if x.term in result.accepted else "tab:gray" for x in top]
        bars.barh(range(len(top)), [x.score for x in top], color=colours)
        bars.scatter([x.threshold for x in top], range(len(top)), marker="|", color="red", s=120, zorder=3)
        bars.set_yticks(range(len(top)), [x.term for x in top], fontsize=7)
        bars.set_xlim(0, 1)
        bars.set_title("top labels (red: threshold)", fontsize=8)
        bars.tick_params(axis="x", labelsize=7)
        for col, similar in enumerate(result.similar[: columns - 2]):
            sx = fig.add_subplot(len(results), columns, row * columns + 3 + col)
            if similar.thumbnail is not None:
                sx.imshow(display_window(similar.thumbnail), cmap="gray", vmin=0, vmax=255)
            sx.set_title(f"d={similar.distance:.2f}", fontsize=8)
            sx.set_xlabel(", ".join(similar.labels[:3]), fontsize=6)
            sx.set_xticks([]), sx.set_yticks([])
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path, "figure", overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return path
