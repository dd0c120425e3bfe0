"""Terminal rendering of annotation results: score bars per class and the nearest reference lesions."""

from __future__ import annotations

from .result import AnnotationResult

CLASS_TITLES = {"bodypart": "Body part", "type": "Type", "attribute": "Attribute"}


def _bar(score: float, threshold: float, width: int = 20) -> str:
    """A bar of ``width`` cells with the threshold shown as ``|`` (the score fills with ``#``)."""
    filled = int(round(min(max(score, 0.0), 1.0) * width))
    tick = min(width - 1, int(round(threshold * width)))
    cells = ["#" if i < filled else "." for i in range(width)]
    cells[tick] = "|"
    return "".join(cells)


def format_result(result: AnnotationResult, max_rows_per_class: int = 8, min_score: float = 0.05) -> str:
    """A readable table: per class, positives first then the next-highest scores, and the similar lesions."""
    loc = result.location
    lines = [
        f"Lesion at slice k={loc.key_slice}, box i/j {loc.box_ijk[0]:.0f}-{loc.box_ijk[2]:.0f} / "
        f"{loc.box_ijk[1]:.0f}-{loc.box_ijk[3]:.0f}, centre LPS ({loc.center_lps[0]:.1f}, {loc.center_lps[1]:.1f}, "
        f"{loc.center_lps[2]:.1f}) mm, from {loc.input_description()}   ->   {result.top_finding()}",
        f"{'':2}{'label':<28}{'score':>6}  {'0' + ' ' * 18 + '1':<20}  threshold",
    ]
    for label_class, items in result.by_class().items():
        shown = [x for x in items if x.term in result.accepted or x.score >= min_score][:max_rows_per_class]
        if not shown:
            continue
        lines.append(f"{CLASS_TITLES[label_class]}:")
        for x in shown:
            mark = "+" if x.term in result.accepted else " "
            lines.append(f"{mark} {x.term:<28}{x.score:6.2f}  {_bar(x.score, x.threshold)}  {x.threshold:.2f}")
    if result.similar:
        lines.append("Similar reference lesions (other patients):")
        for n, s in enumerate(result.similar, start=1):
            sentence = (s.sentence[:70] + "...") if len(s.sentence) > 73 else s.sentence
            lines.append(f"  {n}. lesion {s.lesion_id} (patient {s.patient_id}), distance {s.distance:.3f}: "
                         f"{', '.join(s.labels[:6])}")
            if sentence:
                lines.append(f"     \"{sentence}\"")
    t = result.timings_ms
    if t:
        lines.append("Timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    return "\n".join(lines)
