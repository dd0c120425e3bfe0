"""Tables of a worklist's results, and how often a reader kept the model's decisions.

``summary.csv``: one row per lesion: id, patient, study, key slice, box, the input that made it, top finding,
accepted labels, review status and reader, the labels the reader added and removed.

Agreement (over the lesions a reader accepted or corrected; skipped and unreviewed ones do not count): per label,
the model's positive decisions against the reader's final labels as the truth: TP (both), FP (the reader
removed it), FN (the reader added it), with the model's precision TP / (TP + FP) and recall TP / (TP + FN), and
the same summed over all labels (micro average). ``agreement.csv`` holds the table, ``agreement.png`` a bar chart
of precision and recall for the labels the reader touched or the model proposed.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fileio import atomic_path, write_text_atomic

SUMMARY_COLUMNS = ("lesion_id", "patient_id", "study", "key_slice", "box_ijk", "from", "top_finding", "accepted",
                   "added", "removed", "review_status", "reader")


@dataclass(frozen=True)
class LabelAgreement:
    """The model against the reader for one label (or ``"all labels"``)."""

    term: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def reviewed(results: Sequence[Any]) -> list[Any]:
    """The results a reader accepted or corrected (the statuses that become training data)."""
    from ..review.corrections import TRAINING_STATUSES

    return [r for r in results if r.review_status in TRAINING_STATUSES]


def agreement(results: Sequence[Any]) -> list[LabelAgreement]:
    """Per label (model order, labels that occur), then ``"all labels"``; see the module docstring.

    Example:
        >>> from LesaNetCore.result import AnnotationResult, LabelScore, LesionLocation
        >>> import numpy as np
        >>> labels = (LabelScore("liver", "bodypart", .9, .5, True), LabelScore("cyst", "type", .4, .5, False))
        >>> r = AnnotationResult(labels, frozenset({"liver"}), LesionLocation(0, (0, 0, 1, 1), (0, 0, 0)),
        ...                      np.zeros(2)).with_edits(accept=["cyst"]).reviewed("corrected")
        >>> [(a.term, a.tp, a.fp, a.fn) for a in agreement([r])]
        [('liver', 1, 0, 0), ('cyst', 0, 0, 1), ('all labels', 1, 0, 1)]
    """
    counts: dict[str, list[int]] = {}
    for result in reviewed(results):
        decided = {x.term for x in result.labels if x.decision}
        for label in result.labels:
            model, reader = label.term in decided, label.term in result.accepted
            if model or reader:
                entry = counts.setdefault(label.term, [0, 0, 0])
                entry[0 if model and reader else 1 if model else 2] += 1
    order = {x.term: n for r in results for n, x in enumerate(r.labels)}
    rows = [LabelAgreement(t, *c) for t, c in sorted(counts.items(), key=lambda kv: order.get(kv[0], 0))]
    if rows:
        rows.append(LabelAgreement("all labels", sum(r.tp for r in rows), sum(r.fp for r in rows),
                                   sum(r.fn for r in rows)))
    return rows


def summary_rows(results: Sequence[Any], lesion_ids: Sequence[str], items: Sequence[Any] | None = None) -> list[dict]:
    """The rows of ``summary.csv``."""
    items = list(items or [None] * len(results))
    rows = []
    for result, lesion_id, item in zip(results, lesion_ids, items, strict=True):
        decided = {x.term for x in result.labels if x.decision}
        loc = result.location
        rows.append({
            "lesion_id": lesion_id,
            "patient_id": getattr(item, "patient_id", ""),
            "study": getattr(item, "study_key", ""),
            "key_slice": loc.key_slice,
            "box_ijk": ",".join(f"{v:.2f}" for v in loc.box_ijk),
            "from": loc.input_description(),
            "top_finding": result.top_finding(),
            "accepted": "; ".join(x.term for x in result.accepted_labels()),
            "added": "; ".join(sorted(result.accepted - decided)),
            "removed": "; ".join(sorted(decided - result.accepted)),
            "review_status": result.review_status,
            "reader": result.reader,
        })
    return rows


def write_summary(results: Sequence[Any], lesion_ids: Sequence[str], out_dir: str | os.PathLike,
                  items: Sequence[Any] | None = None) -> list[Path]:
    """Writes summary.csv, and agreement.csv with agreement.png (where matplotlib is installed) when a lesion was
    reviewed; returns the paths."""
    out_dir = Path(out_dir)
    written = [write_text_atomic(out_dir / "summary.csv", _csv(SUMMARY_COLUMNS, summary_rows(results, lesion_ids,
                                                                                         items)),
                                 "summary.csv", overwrite=True)]
    rows = agreement(results)
    if rows:
        table = [{"term": r.term, "tp": r.tp, "fp": r.fp, "fn": r.fn,
                  "precision": "" if r.precision is None else f"{r.precision:.3f}",
                  "recall": "" if r.recall is None else f"{r.recall:.3f}"} for r in rows]
        written.append(write_text_atomic(out_dir / "agreement.csv",
                                         _csv(("term", "tp", "fp", "fn", "precision", "recall"), table),
                                         "agreement.csv", overwrite=True))
        import importlib.util

        if importlib.util.find_spec("matplotlib") is not None:  # Slicer's own Python may lack it: tables only
            written.append(plot_agreement(rows, out_dir / "agreement.png", len(reviewed(results))))
    return written


def plot_agreement(rows: Sequence[LabelAgreement], path: Path, lesions: int) -> Path:
    """A bar chart of the model's precision and recall against the reader, per label and overall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r.term for r in rows]
    precision = [np.nan if r.precision is None else r.precision for r in rows]
    recall = [np.nan if r.recall is None else r.recall for r in rows]
    height = max(3.0, 0.28 * len(rows) + 1.2)
    figure, axes = plt.subplots(figsize=(7.5, height))
    y = np.arange(len(rows))
    axes.barh(y - 0.2, precision, 0.4, label="precision (reader kept the model's label)", color="#2e8b57")
    axes.barh(y + 0.2, recall, 0.4, label="recall (model found the reader's label)", color="#4682b4")
    axes.set_yticks(y, names)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("model against the reader")
    axes.set_title(f"Agreement over {lesions} reviewed lesions")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    with atomic_path(path, "agreement.png", overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return path


def _csv(columns: Sequence[str], rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
