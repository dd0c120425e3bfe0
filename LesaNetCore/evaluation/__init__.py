"""Evaluation as the LesaNet paper does it: per-label metrics, calibrated thresholds, ACG@K, reports.

Pure numpy (matplotlib only inside the plotting functions). ``metrics`` holds the classification metrics,
``retrieval_metrics`` the retrieval metric, ``report`` the JSON/Markdown/PNG report and the ablation table.
"""

from __future__ import annotations

from .metrics import (
    DEFAULT_FREQUENCY_BINS,
    DEFAULT_THRESHOLD_GRID,
    breakdown,
    calibrate_thresholds,
    frequency_bins,
    mean_per_class,
    micro_metrics,
    per_label_metrics,
    roc_auc,
    roc_curve,
)
from .report import (
    PAPER_REFERENCE,
    ablation_table,
    compare_threshold_grids,
    evaluation_report,
    report_markdown,
    write_evaluation_report,
)
from .retrieval_metrics import acg_at_k

__all__ = [
    "DEFAULT_FREQUENCY_BINS",
    "DEFAULT_THRESHOLD_GRID",
    "PAPER_REFERENCE",
    "ablation_table",
    "acg_at_k",
    "breakdown",
    "calibrate_thresholds",
    "compare_threshold_grids",
    "evaluation_report",
    "frequency_bins",
    "mean_per_class",
    "micro_metrics",
    "per_label_metrics",
    "report_markdown",
    "roc_auc",
    "roc_curve",
    "write_evaluation_report",
]
