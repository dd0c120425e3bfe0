"""Markdown report for people: per lesion, the accepted labels by class with score bars, edits and evidence.

Readable in any text viewer (score bars are text, ``████████░░``) and rendered nicely by GitHub, GitLab or a
Markdown preview. The score bar's length is the model's score; the threshold is printed beside it so a reader
sees how confident each decision was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import invalid
from ..fileio import write_text_atomic
from ..result import LABEL_CLASSES, AnnotationResult

CLASS_TITLES = {"bodypart": "Body part", "type": "Type", "attribute": "Attribute"}
BAR_WIDTH = 10


def score_bar(score: float, width: int = BAR_WIDTH) -> str:
    """A text bar for a score in [0, 1] (clipped), rounded to the nearest cell.

    Example:
        >>> score_bar(0.74)
        '███████░░░'
    """
    filled = int(round(min(max(float(score), 0.0), 1.0) * width))
    return "█" * filled + "░" * (width - filled)


def markdown_report(
    results: Sequence[AnnotationResult],
    *,
    title: str = "LesaNet lesion annotation report",
    disclaimer: str | None = None,
    max_similar: int = 5,
) -> str:
    """The Markdown text of the report (what :func:`write_markdown_report` writes)."""
    if isinstance(results, AnnotationResult):
        results = [results]
    results = list(results)
    for index, result in enumerate(results):
        if not isinstance(result, AnnotationResult):
            raise invalid(f"results[{index}]", "must be an AnnotationResult", type(result).__name__)
    if max_similar < 0:
        raise invalid("max_similar", "must be >= 0", max_similar)
    lines = [f"# {_inline(title)}", ""]
    if disclaimer:
        lines += [f"> **{_inline(disclaimer)}**", ""]
    sources = sorted({r.volume_source for r in results if r.volume_source})
    models = sorted({r.model for r in results if r.model})
    if sources:
        lines.append(f"- Volume: `{', '.join(sources)}`")
    if models:
        lines.append(f"- Model: `{', '.join(models)}`")
    lines += [f"- Lesions: {len(results)}", ""]
    for number, result in enumerate(results, start=1):
        lines += _lesion_section(result, number, max_similar)
    return "\n".join(lines).rstrip() + "\n"


def write_markdown_report(
    results: Sequence[AnnotationResult],
    path: str | os.PathLike,
    overwrite: bool = False,
    *,
    title: str = "LesaNet lesion annotation report",
    disclaimer: str | None = None,
    max_similar: int = 5,
) -> Path:
    """Writes the Markdown report atomically.

    Args:
        results: annotated lesions, in report order.
        path: output .md file.
        overwrite: replace an existing file.
        title: the report's heading.
        disclaimer: a line shown in bold under the title (e.g. "Demo model trained on phantoms; not for
            clinical use.").
        max_similar: at most this many similar lesions per lesion.

    Returns:
        The written path.
    """
    text = markdown_report(results, title=title, disclaimer=disclaimer, max_similar=max_similar)
    return write_text_atomic(path, text, "markdown path", overwrite)


def _lesion_section(result: AnnotationResult, number: int, max_similar: int) -> list[str]:
    loc = result.location
    i1, j1, i2, j2 = loc.box_ijk
    lines = [f"## Lesion {number}: {_inline(result.top_finding())}", ""]
    lines.append(f"- Key slice {loc.key_slice}, box ({_num(i1)}, {_num(j1)})–({_num(i2)}, {_num(j2)}) voxels "
                 f"(I, J; corners inclusive; from: {loc.input_description()})")
    if loc.recist_ij:
        points = "; ".join(f"({_num(i)}, {_num(j)})" for i, j in loc.recist_ij)
        lines.append(f"- RECIST end points (I, J): {points}")
    lines.append("- Centre (LPS): " + ", ".join(f"{v:.1f}" for v in loc.center_lps) + " mm")
    if loc.source_file:
        lines.append(f"- Source image: `{loc.source_file}`")
    decided = {x.term for x in result.labels if x.decision}
    if result.edited:
        added = sorted(result.accepted - decided)
        removed = sorted(decided - result.accepted)
        lines.append(f"- **Label set edited by the user** — added: {', '.join(added) or 'none'}; "
                     f"removed: {', '.join(removed) or 'none'}")
    lines += ["", "| Class | Label | RadLex | Score | Bar | Threshold | Note |", "|---|---|---|---:|---|---:|---|"]
    accepted = result.accepted_labels()
    for label_class in LABEL_CLASSES:
        for x in (a for a in accepted if a.label_class == label_class):
            note = "added by user" if x.term not in decided else ""
            lines.append(f"| {CLASS_TITLES[label_class]} | {_cell(x.term)} | {x.radlex or ''} | {x.score:.2f} "
                         f"| `{score_bar(x.score)}` | {x.threshold:.2f} | {note} |")
    if not accepted:
        lines.append("| — | no accepted labels | | | | | |")
    lines.append("")
    rejected = sorted(decided - result.accepted)
    if rejected:
        lines += [f"Rejected by the user: {', '.join(rejected)}", ""]
    similar = result.similar[:max_similar]
    if similar:
        lines += ["### Similar reference lesions", "", "| # | Lesion | Patient | Distance | Labels | Report sentence |",
                  "|---:|---|---|---:|---|---|"]
        for rank, s in enumerate(similar, start=1):
            lines.append(f"| {rank} | {_cell(s.lesion_id)} | {_cell(s.patient_id)} | {s.distance:.3f} | "
                         f"{_cell(', '.join(s.labels))} | {_cell(s.sentence)} |")
        lines.append("")
    if result.timings_ms:
        lines += ["Timings: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()), ""]
    return lines


def _num(value: float) -> str:
    return f"{value:g}"


def _inline(text: str) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    """Table-cell text: one line, pipes escaped so a sentence cannot break the table."""
    return _inline(text).replace("|", "\\|")


__all__ = ["markdown_report", "score_bar", "write_markdown_report"]
