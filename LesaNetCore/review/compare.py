"""Parent against child on a reader's held-out corrections (``lesanet evaluate --corrections``).

A fine-tuned model is worth keeping when it agrees better with the reader on lesions it did not train on. Both
models decide as the Annotator does (their own thresholds, ontology-consistent label sets) on the corrections'
held-out patients (:func:`LesaNetCore.review.corrections.held_out_patients`), and the reader's final labels are the
truth. The report gives per label and mean per-class precision, recall and F1 for each model, the change, and a
plot of the labels that changed most.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LesaNetError, invalid
from ..fileio import atomic_path, write_text_atomic

REPORT_JSON = "comparison.json"
REPORT_MD = "comparison.md"
REPORT_PNG = "comparison.png"


def model_scores(checkpoint: Any, cache: Any, splits: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per split: a checkpoint's scores on the cache, from the inference path the Annotator uses
    (``embed_split``), with one fused copy of the model for all ``splits``."""
    from ..model import InferenceModel
    from ..pipeline.evaluate import embed_split
    from ..training.checkpoint import build_model

    inference = InferenceModel(build_model(checkpoint, device="cpu"), "cpu")
    return {split: embed_split(inference, cache, split)[0] for split in splits}


def model_decisions(checkpoint: Any, scores: np.ndarray) -> np.ndarray:
    """The ontology-consistent decisions the Annotator makes from ``scores`` with the checkpoint's thresholds and
    label ontology (``consistent_decisions``, as ``lesanet evaluate``)."""
    from ..annotate import label_ontology_for
    from ..pipeline.evaluate import consistent_decisions

    return consistent_decisions(label_ontology_for(checkpoint), scores,
                                np.asarray(checkpoint.thresholds, dtype=np.float64))


def compare_on_held_out(parent: Any, child: Any, cache: Any, split: str = "val",
                        scores: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Parent and child on a split of the corrections: per-label and mean per-class P / R / F1.

    ``scores`` may give either model's scores on ``split`` (``{"child": ...}``) when the caller has them.
    """
    from ..evaluation.metrics import mean_per_class, per_label_metrics
    from ..training.dataset import split_arrays

    labels = split_arrays(cache, split)
    targets, valid = labels["targets"] > 0, labels["valid"]
    out: dict[str, Any] = {"split": split, "lesions": int(len(targets)), "labels": {}}
    for name, checkpoint in (("parent", parent), ("child", child)):
        given = (scores or {}).get(name)
        split_scores = given if given is not None else model_scores(checkpoint, cache, (split,))[split]
        metrics = per_label_metrics(split_scores, targets, valid, np.asarray(checkpoint.thresholds),
                                    predictions=model_decisions(checkpoint, split_scores))
        out[name] = {key: (None if value != value else float(value)) for key, value in mean_per_class(metrics).items()}
        for index, term in enumerate(cache.label_names):
            if metrics["positives"][index] == 0 and metrics["predicted"][index] == 0:
                continue
            entry = out["labels"].setdefault(term, {"positives": int(metrics["positives"][index])})
            entry[name] = {k: None if np.isnan(metrics[k][index]) else float(metrics[k][index])
                           for k in ("precision", "recall", "f1")}
    if not out["labels"]:
        raise LesaNetError(f"corrections: the {split} part must have labelled lesions to compare on, but has none")
    return out


def recorded_parent(child: Any, argument: str = "--parent") -> str:
    """The parent checkpoint a fine-tuned child recorded, where it still is."""
    provenance = (child.metrics or {}).get("finetune") or {}
    path = provenance.get("parent")
    if not path:
        raise invalid(argument, "is required: the model records no parent (it was not made by lesanet finetune)",
                      None)
    if not Path(path).is_file():
        raise invalid(argument, "is required: the parent the model records is no longer there", path)
    return path


def evaluate_corrections(model: str | os.PathLike, corrections: str | os.PathLike, out_dir: str | os.PathLike, *,
                         parent: str | os.PathLike | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Writes OUT/comparison.json, comparison.md and comparison.png: ``parent`` against ``model`` (the child).

    ``parent`` defaults to the checkpoint the child recorded when it was fine-tuned; the held-out part is the
    corrections folder's (the same patients fine-tuning held out, as long as the folder only grew since).

    Raises:
        LesaNetError: a folder without corrections or without a held-out part, models of another label list, a
            report folder that already holds a comparison (without ``overwrite``).
    """
    from ..training import load_checkpoint, open_patch_cache
    from ..training.checkpoint import checkpoint_digest
    from .corrections import CACHE_DIR

    out_dir = Path(out_dir)
    if (out_dir / REPORT_JSON).exists() and not overwrite:
        raise invalid("--out", "already holds a comparison (pass --overwrite to replace it)", str(out_dir))
    child = load_checkpoint(model)
    parent_path = parent or recorded_parent(child)
    elder = load_checkpoint(parent_path)
    if not (Path(corrections) / CACHE_DIR).is_dir():
        raise invalid("--corrections", "must be a corrections folder with reviewed lesions (cache/ is missing)",
                      str(corrections))
    cache = open_patch_cache(Path(corrections) / CACHE_DIR)
    for name, checkpoint in (("--model", child), ("--parent", elder)):
        if list(checkpoint.label_names) != cache.label_names:
            raise invalid(name, "must have the corrections' label list", f"{len(checkpoint.label_names)} labels "
                          f"vs {len(cache.label_names)}")
    if len(cache.rows("val")) == 0:
        raise invalid("--corrections", "must have a held-out part (corrections of at least two patients)",
                      f"{len(cache.rows('train'))} lesions, all in training")
    report = compare_on_held_out(elder, child, cache)
    report["models"] = {"parent": {"path": str(Path(parent_path).resolve()), "digest": checkpoint_digest(elder)},
                        "child": {"path": str(Path(model).resolve()), "digest": checkpoint_digest(child)}}
    report["corrections"] = str(Path(corrections).resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(report, indent=1) + "\n", REPORT_JSON, overwrite=True)
    write_text_atomic(out_dir / REPORT_MD, comparison_markdown(report), REPORT_MD, overwrite=True)
    plot_comparison(report, out_dir / REPORT_PNG)
    return report


def _f1(entry: dict[str, Any], name: str) -> float:
    value = (entry.get(name) or {}).get("f1")
    return 0.0 if value is None else float(value)


def changed_labels(report: dict[str, Any], limit: int = 20) -> list[tuple[str, dict[str, Any]]]:
    """The labels whose F1 changed most between parent and child (largest change first)."""
    items = list(report["labels"].items())
    items.sort(key=lambda item: (-abs(_f1(item[1], "child") - _f1(item[1], "parent")), item[0]))
    return items[:limit]


def comparison_markdown(report: dict[str, Any]) -> str:
    """The comparison as a Markdown report: headline means, then the labels that changed most."""
    def number(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["# Parent and child on the held-out corrections", "",
             f"{report['lesions']} held-out lesions of {report.get('corrections', 'the corrections')}; the reader's "
             "final labels are the truth, each model decides with its own thresholds.", "",
             "| model | precision | recall | F1 |", "|---|---|---|---|"]
    for name in ("parent", "child"):
        numbers = report[name]
        lines.append(f"| {name} | {number(numbers.get('precision'))} | {number(numbers.get('recall'))} | "
                     f"{number(numbers.get('f1'))} |")
    lines += ["", "## Labels by change of F1", "", "| label | positives | parent F1 | child F1 | change |",
              "|---|---|---|---|---|"]
    for term, entry in changed_labels(report, limit=len(report["labels"])):
        parent, child = _f1(entry, "parent"), _f1(entry, "child")
        lines.append(f"| {term} | {entry['positives']} | {parent:.3f} | {child:.3f} | {child - parent:+.3f} |")
    return "\n".join(lines) + "\n"


def plot_comparison(report: dict[str, Any], path: Path) -> Path | None:
    """Bars of parent and child F1 for the labels that changed most (None where matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    items = changed_labels(report)
    figure, axes = plt.subplots(figsize=(8, 0.35 * len(items) + 1.4))
    positions = np.arange(len(items))
    axes.barh(positions - 0.2, [_f1(e, "parent") for _, e in items], height=0.4, label="parent", color="#999999")
    axes.barh(positions + 0.2, [_f1(e, "child") for _, e in items], height=0.4, label="child", color="#2b7bba")
    axes.set_yticks(positions, [f"{term} ({entry['positives']})" for term, entry in items])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1 on the held-out corrections (positives in brackets)")
    axes.set_title(f"Parent {report['parent'].get('f1') or 0:.3f} -> child {report['child'].get('f1') or 0:.3f} "
                   f"mean F1, {report['lesions']} lesions")
    axes.legend(loc="lower right")
    figure.tight_layout()
    try:
        with atomic_path(path, "comparison plot", overwrite=True) as partial:
            figure.savefig(partial, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path
