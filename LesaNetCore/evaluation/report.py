"""The evaluation report: the paper's tables as JSON and Markdown, plus plots, and the ablation table.

:func:`evaluation_report` turns arrays into a JSON-ready dictionary (numbers only, nan written as null);
:func:`write_evaluation_report` renders it to files; :func:`ablation_table` lays several runs out as the paper's
Table 1 with the published LesaNet row underneath for comparison.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import invalid
from ..fileio import atomic_path, check_writable, write_text_atomic
from .metrics import (
    DEFAULT_FREQUENCY_BINS,
    LABEL_CLASSES,
    METRIC_NAMES,
    breakdown,
    calibrate_thresholds,
    check_inputs,
    mean_per_class,
    micro_metrics,
    per_label_metrics,
    roc_curve,
)
from .retrieval_metrics import acg_at_k

PAPER_REFERENCE = {
    "auc": 0.9344,
    "precision": 0.3593,
    "recall": 0.5327,
    "f1": 0.3423,
    "hand_auc": 0.9398,
    "hand_f1": 0.4344,
    "acg@5": 2.36,
}
"""LesaNet as published (Yan et al., CVPR 2019, Table 1): text-mined test set, hand-labeled test set, ACG@5."""

REPORT_FILES = ("report.json", "report.md", "roc_curves.png", "auc_f1_vs_frequency.png", "f1_by_class.png")

_ABLATION_COLUMNS = (
    ("auc", "AUC"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
)


def evaluation_report(
    scores: np.ndarray,
    targets: np.ndarray,
    valid: np.ndarray | None,
    thresholds: np.ndarray | Sequence[float],
    term_list: Sequence[str],
    label_classes: Sequence[str],
    train_positive_counts: np.ndarray | Sequence[int],
    embeddings: np.ndarray | None = None,
    label_sets: np.ndarray | None = None,
    patient_ids: np.ndarray | Sequence | None = None,
    title: str = "",
    *,
    predictions: np.ndarray | None = None,
    acg_ks: Sequence[int] = (5,),
    frequency_edges: Sequence[float] = DEFAULT_FREQUENCY_BINS,
) -> dict:
    """All the paper's numbers for one evaluated set, as a JSON-ready dictionary.

    Args:
        scores, targets, valid: (N, C) test-set scores, labels and validity (False = uncertain).
        thresholds: (C,) thresholds calibrated on the validation set (:func:`calibrate_thresholds`).
        term_list: (C,) label names.
        label_classes: (C,) "bodypart", "type" or "attribute".
        train_positive_counts: (C,) training positives per label (for the frequency breakdown).
        embeddings, label_sets, patient_ids: optional retrieval inputs for ACG@K (all three or none);
            ``label_sets`` defaults to ``targets & valid``.
        title: a heading for the Markdown report.
        predictions: optional (N, C) post-processed decisions (see :func:`per_label_metrics`).
        acg_ks: K values for ACG@K.
        frequency_edges: lower edges of the training-frequency bins.

    Returns:
        ``{"title", "num_lesions", "num_labels", "mean_per_class", "micro", "breakdown", "per_label",
        "retrieval", "paper_reference"}``; ``per_label`` is a list of rows sorted by training frequency
        (most frequent first), ``retrieval`` is ``{"acg": {"5": ...}}`` or None.
    """
    scores, targets, valid = check_inputs(scores, targets, valid)
    n_lesions, n_labels = scores.shape
    terms = [str(t) for t in term_list]
    if len(terms) != n_labels:
        raise invalid("term_list", f"must hold one name per label ({n_labels})", len(terms))
    counts = np.asarray(train_positive_counts).ravel()
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    if thresholds.shape != (n_labels,):
        raise invalid("thresholds", f"must hold one threshold per label ({n_labels})", thresholds.shape)
    per_label = per_label_metrics(scores, targets, valid, thresholds, predictions)
    parts = breakdown(per_label, label_classes, counts, frequency_edges)
    order = sorted(range(n_labels), key=lambda c: (-float(counts[c]), terms[c]))
    rows = [
        {
            "label_index": c,
            "term": terms[c],
            "class": str(label_classes[c]),
            "train_positive": int(counts[c]),
            "positives": int(per_label["positives"][c]),
            "negatives": int(per_label["negatives"][c]),
            "predicted": int(per_label["predicted"][c]),
            "threshold": float(thresholds[c]),
            **{name: float(per_label[name][c]) for name in METRIC_NAMES},
        }
        for c in order
    ]
    retrieval = None
    given = [x is not None for x in (embeddings, patient_ids)]
    if (any(given) and not all(given)) or (label_sets is not None and not any(given)):
        raise invalid(
            "embeddings/patient_ids/label_sets",
            "embeddings and patient_ids must be given together (label_sets only with them) for ACG@K",
            given + [label_sets is not None],
        )
    if all(given):
        sets = (targets & valid) if label_sets is None else label_sets
        acg = acg_at_k(embeddings, sets, patient_ids, ks=acg_ks)
        retrieval = {
            "acg": {str(k): v for k, v in acg.items()},
            "num_queries": int(np.asarray(embeddings).shape[0]),
        }
    report = {
        "title": title,
        "num_lesions": int(n_lesions),
        "num_labels": int(n_labels),
        "uncertain_entries": int((~valid).sum()),
        "mean_per_class": mean_per_class(per_label),
        "micro": micro_metrics(scores, targets, valid, thresholds, predictions),
        "breakdown": parts,
        "per_label": rows,
        "retrieval": retrieval,
        "paper_reference": dict(PAPER_REFERENCE),
    }
    return _json_ready(report)


def compare_threshold_grids(
    val: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    test: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    grids: Mapping[str, Sequence[float] | str] | None = None,
) -> dict[str, dict[str, float]]:
    """Calibrates thresholds on validation with each grid and reports per-class-averaged test metrics.

    Answers "does a finer threshold search than the reference's {0.3, ..., 0.9} help on held-out data?".

    Args:
        val: (scores, targets, valid) of the validation set.
        test: (scores, targets, valid) of the test set.
        grids: name -> grid (see :func:`calibrate_thresholds`); default: reference, fine, midpoints.
    """
    grids = grids or {"reference": "default", "fine": "fine", "midpoints": "midpoints"}
    out = {}
    for name, grid in grids.items():
        kwargs = {} if grid == "default" else {"grid": grid}
        thresholds = calibrate_thresholds(*val, **kwargs)
        val_metrics = mean_per_class(per_label_metrics(*val, thresholds))
        test_metrics = mean_per_class(per_label_metrics(*test, thresholds))
        out[name] = {
            "val_f1": val_metrics["f1"],
            **{f"test_{k}": test_metrics[k] for k in ("precision", "recall", "f1")},
        }
    return _json_ready(out)


def write_evaluation_report(
    report: dict,
    out_dir: str | os.PathLike,
    *,
    scores: np.ndarray | None = None,
    targets: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Writes report.json, report.md and PNG plots into ``out_dir``, each atomically.

    Every target is checked before anything is written, so a refused overwrite leaves the folder untouched.
    The ROC plot needs ``scores`` and ``targets`` (of the same set and label order as the report) and is
    skipped without them.

    Returns:
        The written paths.
    """
    missing = [
        key
        for key in ("num_lesions", "num_labels", "mean_per_class", "micro", "breakdown", "per_label")
        if key not in report
    ]
    if missing:
        raise invalid("report", "must be the dictionary made by evaluation_report (keys missing)", missing)
    out_dir = Path(out_dir)
    names = list(REPORT_FILES)
    if scores is None or targets is None:
        names.remove("roc_curves.png")
    for name in names:
        check_writable(out_dir / name, f"out_dir/{name}", overwrite)
    written = [
        write_text_atomic(
            out_dir / "report.json", json.dumps(report, indent=2) + "\n", "report.json", overwrite
        ),
        write_text_atomic(
            out_dir / "report.md",
            report_markdown(report, [n for n in names if n.endswith(".png")]),
            "report.md",
            overwrite,
        ),
    ]
    figures = {
        "auc_f1_vs_frequency.png": lambda: _figure_metric_vs_frequency(report),
        "f1_by_class.png": lambda: _figure_by_class(report),
    }
    if "roc_curves.png" in names:
        figures["roc_curves.png"] = lambda: _figure_roc(report, scores, targets, valid)
    for name, make in figures.items():
        written.append(_save_figure(make(), out_dir / name, overwrite))
    return written


def report_markdown(report: Mapping, images: Sequence[str] = ()) -> str:
    """The report as Markdown, tables in the paper's layout; ``images`` are plot files to link (same folder)."""
    lines = [f"# {report.get('title') or 'LesaNet evaluation'}", ""]
    lines.append(
        f"{report['num_lesions']} lesions, {report['num_labels']} labels, {report.get('uncertain_entries', 0)} "
        "uncertain lesion-label entries left out. Thresholds calibrated per label on the validation set; "
        "per-class averages over labels with positives and negatives in this set."
    )
    lines += ["", "## Per-class averaged accuracy", ""]
    lines += _mean_table([("All labels", report["mean_per_class"])], first="Labels")
    paper = report.get("paper_reference") or PAPER_REFERENCE
    lines.append(
        f"| Paper, LesaNet (text-mined test) | | {paper['auc']:.4f} | {paper['precision']:.4f} | "
        f"{paper['recall']:.4f} | {paper['f1']:.4f} |"
    )
    micro = report["micro"]
    lines += [
        "",
        f"Micro-averaged over all entries: precision {_fmt(micro['precision'])}, recall {_fmt(micro['recall'])}, "
        f"F1 {_fmt(micro['f1'])}, AUC {_fmt(micro['auc'])}; positive-weighted mean AUC "
        f"{_fmt(micro['weighted_auc'])}.",
        "",
        "## By label class",
        "",
    ]
    lines += _mean_table(list(report["breakdown"]["by_class"].items()), first="Class")
    lines += ["", "## By training frequency (positives per label in the training set)", ""]
    lines += _mean_table(list(report["breakdown"]["by_frequency"].items()), first="Training positives")
    retrieval = report.get("retrieval")
    lines += ["", "## Retrieval", ""]
    if retrieval:
        lines += ["| K | ACG@K |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v, 3)} |" for k, v in retrieval["acg"].items()]
        lines += [
            "",
            f"Paper, LesaNet: ACG@5 = {paper['acg@5']:.2f}. Lesions of the query's patient are excluded.",
        ]
    else:
        lines.append("No embeddings given: retrieval not evaluated.")
    if images:
        lines += ["", "## Plots", ""] + [f"![{Path(name).stem.replace('_', ' ')}]({name})" for name in images]
    lines += ["", "## Per label (most frequent first)", ""]
    lines.append(
        "| Label | Class | Train pos. | Test pos. | Test neg. | Threshold | AUC | Precision | Recall | F1 |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for row in report["per_label"]:
        lines.append(
            f"| {row['term']} | {row['class']} | {row['train_positive']} | {row['positives']} | {row['negatives']} "
            f"| {_fmt(row['threshold'], 2)} | {_fmt(row['auc'])} | {_fmt(row['precision'])} | {_fmt(row['recall'])} "
            f"| {_fmt(row['f1'])} |"
        )
    return "\n".join(lines) + "\n"


def ablation_table(rows: Mapping[str, Mapping]) -> str:
    """Markdown in the layout of the paper's Table 1, with the published LesaNet row as footer.

    Args:
        rows: method name -> its numbers, either an :func:`evaluation_report` dictionary of the text-mined test
            set or a flat dictionary with keys ``auc``, ``precision``, ``recall``, ``f1`` (text-mined test set),
            optionally ``hand_auc``, ``hand_precision``, ``hand_recall``, ``hand_f1`` (hand-labeled test set)
            and ``acg@5``. Missing numbers print as "-". Hand-labeled columns appear when any row has them.

    Example:
        >>> print(ablation_table({"LesaNet": {"auc": 0.93, "precision": 0.35, "recall": 0.5, "f1": 0.34}}))
        ... # doctest: +ELLIPSIS
        | Method | AUC | Precision | Recall | F1 | ACG@5 |
        |---|---|---|---|---|---|
        | LesaNet | 0.9300 | 0.3500 | 0.5000 | 0.3400 | - |
        | *Paper: LesaNet (Yan et al., CVPR 2019)* | *0.9344* | *0.3593* | *0.5327* | *0.3423* | *2.36* |
        ...
    """
    if not rows:
        raise invalid("rows", "must name at least one method", dict(rows))
    flat = {name: _flat_row(name, values) for name, values in rows.items()}
    hand = any(any(k.startswith("hand_") and v is not None for k, v in r.items()) for r in flat.values())
    keys = [k for k, _ in _ABLATION_COLUMNS]
    headers = [h for _, h in _ABLATION_COLUMNS]
    if hand:
        keys += [f"hand_{k}" for k, _ in _ABLATION_COLUMNS]
        headers += [f"{h} (hand)" for _, h in _ABLATION_COLUMNS]
    keys.append("acg@5")
    headers.append("ACG@5")
    lines = ["| Method | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
    for name, row in flat.items():
        cells = [_fmt(row.get(k), 2 if k == "acg@5" else 4) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ref = [_fmt(PAPER_REFERENCE.get(k), 2 if k == "acg@5" else 4) for k in keys]
    lines.append("| *Paper: LesaNet (Yan et al., CVPR 2019)* | " + " | ".join(f"*{c}*" for c in ref) + " |")
    lines += [
        "",
        "Text-mined test set unless marked (hand) = hand-labeled test set. Per-class averages over labels with "
        "positives and negatives; thresholds calibrated per label on the validation set. The footer row is the "
        "published result (the paper does not report hand-labeled precision and recall here: '-').",
    ]
    return "\n".join(lines) + "\n"


def _flat_row(name: str, values: Mapping) -> dict[str, float | None]:
    if not isinstance(values, Mapping):
        raise invalid(f"rows[{name!r}]", "must be a dictionary of metrics", type(values).__name__)
    if "mean_per_class" in values:
        flat: dict[str, float | None] = {k: values["mean_per_class"].get(k) for k, _ in _ABLATION_COLUMNS}
        retrieval = values.get("retrieval") or {}
        flat["acg@5"] = (retrieval.get("acg") or {}).get("5")
        return flat
    known = {k for k, _ in _ABLATION_COLUMNS} | {f"hand_{k}" for k, _ in _ABLATION_COLUMNS} | {"acg@5"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise invalid(f"rows[{name!r}]", f"keys must be among {sorted(known)}", unknown)
    return {k: (None if values[k] is None else float(values[k])) for k in values}


def _mean_table(items: list[tuple[str, Mapping]], first: str) -> list[str]:
    lines = [f"| {first} | Labels used | AUC | Precision | Recall | F1 |", "|---|---|---|---|---|---|"]
    for name, m in items:
        lines.append(
            f"| {name} | {m['num_labels']} | {_fmt(m['auc'])} | {_fmt(m['precision'])} | {_fmt(m['recall'])} "
            f"| {_fmt(m['f1'])} |"
        )
    return lines


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _json_ready(value):
    """Converts numpy scalars/arrays to Python and nan/inf to None, recursively (strict JSON has no nan)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer, bool, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _new_figure(width: float = 6.4, height: float = 4.8):
    """A matplotlib Figure on the Agg canvas: no pyplot global state, safe off the main thread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: Path, overwrite: bool) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    with atomic_path(path, path.name, overwrite) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def _figure_roc(report: Mapping, scores, targets, valid, n_curves: int = 6):
    """ROC curves of the most frequent labels that have test positives and negatives."""
    scores, targets, valid = check_inputs(scores, targets, valid)
    if scores.shape != (report["num_lesions"], report["num_labels"]):
        raise invalid(
            "scores",
            f"must match the report's shape {(report['num_lesions'], report['num_labels'])}",
            scores.shape,
        )
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    shown = [row for row in report["per_label"] if row["auc"] is not None][:n_curves]
    for row in shown:
        c = row["label_index"]
        keep = valid[:, c]
        fpr, tpr, _ = roc_curve(scores[keep, c], targets[keep, c])
        ax.plot(fpr, tpr, label=f"{row['term']} (AUC {row['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=0.8)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title("ROC curves of the most frequent labels")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _figure_metric_vs_frequency(report: Mapping):
    """Per-label AUC and F1 against training frequency (log scale): how accuracy falls off for rare labels."""
    fig = _new_figure(10, 4)
    rows = [r for r in report["per_label"] if r["auc"] is not None]
    counts = np.array([max(r["train_positive"], 1) for r in rows], dtype=float)
    colours = {"bodypart": "tab:blue", "type": "tab:orange", "attribute": "tab:green"}
    for i, metric in enumerate(("auc", "f1")):
        ax = fig.add_subplot(1, 2, i + 1)
        for cls in LABEL_CLASSES:
            pick = [j for j, r in enumerate(rows) if r["class"] == cls and r[metric] is not None]
            ax.scatter(counts[pick], [rows[j][metric] for j in pick], s=12, c=colours[cls], label=cls)
        if rows:
            ax.set_xscale("log")
        ax.set_xlabel("Training positives (log scale)")
        ax.set_ylabel(metric.upper())
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right", fontsize="small")
    fig.suptitle("Per-label accuracy vs. training frequency")
    return fig


def _figure_by_class(report: Mapping):
    """Per-class-averaged F1 (and AUC) by label class and frequency bin as bars."""
    fig = _new_figure(10, 4)
    for i, key in enumerate(("by_class", "by_frequency")):
        ax = fig.add_subplot(1, 2, i + 1)
        groups = report["breakdown"][key]
        names = list(groups)
        x = np.arange(len(names))
        for offset, metric in ((-0.2, "f1"), (0.2, "auc")):
            values = [groups[n][metric] if groups[n][metric] is not None else 0.0 for n in names]
            ax.bar(x + offset, values, width=0.4, label=metric.upper())
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30 if key == "by_frequency" else 0, fontsize="small")
        ax.set_ylim(0, 1.15)  # headroom so the legend sits above the bars
        ax.set_title("By label class" if key == "by_class" else "By training positives")
        ax.legend(loc="upper center", ncol=2, fontsize="small")
    fig.suptitle("Per-class averaged F1 and AUC")
    return fig
