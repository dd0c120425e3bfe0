"""Multilabel classification metrics as LesaNet is evaluated (Yan et al., CVPR 2019, Table 1).

The paper (and its released ``evaluate.py``) scores each label separately and then averages over labels, so a
rare label counts as much as "chest": per-label thresholds are calibrated to maximise F1 on the validation set,
and AUC, precision, recall and F1 are averaged over the labels that have both positives and negatives in the
evaluated set. Uncertain label entries (text-mined from hedged sentences) are neither positive nor negative:
callers pass them as ``valid=False`` and every metric here leaves them out.

Conventions kept from the reference code so our numbers compare with the published ones:

* a label is predicted when ``score >= threshold``;
* precision of a label that is never predicted is 1.0 (no false alarms); its recall is then 0 and F1 is 0;
* F1 is 0 when precision + recall is 0.

Arrays: ``scores`` (N, C) are probabilities in [0, 1] (they may be any finite number for AUC),
``targets`` (N, C) booleans (1 = the label applies), ``valid`` (N, C) booleans or None (everything valid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import invalid

DEFAULT_THRESHOLD_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The reference code's threshold search grid (``np.arange(.3, 1, .1)``)."""

FINE_THRESHOLD_GRID = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""``grid="fine"``: 0.01 steps, to test whether a finer search than the reference's helps on held-out data."""

NO_POSITIVE_THRESHOLD = 0.5
"""Threshold of a label with no valid positive in the calibration set: F1 is undefined there, so we keep the
neutral point of a sigmoid. (The reference leaves such labels at 0, i.e. predicts them for every lesion.)"""

NO_SKILL_THRESHOLD = 1.0
"""Threshold of a label whose F1 is 0 at every candidate: the reference then keeps 1.0 (predict the label only
at full certainty), which maximises its precision instead of flooding every lesion with a useless label."""

DEFAULT_FREQUENCY_BINS = (0, 50, 100, 200, 500, 1000)
"""Lower edges of the training-frequency bins (positives per label in the training set). With the official 171
labels (17 to 7,597 training positives) this yields bins of 17-39 labels each."""

METRIC_NAMES = ("auc", "precision", "recall", "f1")
LABEL_CLASSES = ("bodypart", "type", "attribute")


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Area under the ROC curve, tie-aware: the Mann-Whitney U statistic with average ranks.

    A tied positive/negative pair counts one half, which is exactly the area under the ROC curve drawn through
    the tied points (what ``sklearn.metrics.roc_auc_score`` gives).

    Returns:
        The AUC, or nan when only one class is present (the AUC is undefined there).

    Example:
        >>> roc_auc(np.array([0.1, 0.4, 0.4, 0.8]), np.array([False, False, True, True]))
        0.875
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = _as_bool(targets, "targets").ravel()
    if scores.shape != targets.shape:
        raise invalid("targets", f"must have the same length as scores ({scores.size})", targets.size)
    if not np.all(np.isfinite(scores)):
        raise invalid("scores", "must be finite", scores[~np.isfinite(scores)][:3].tolist())
    n_pos = int(targets.sum())
    n_neg = targets.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    u = ranks[targets].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points, one per distinct score (ties move both rates at once), for plotting.

    Returns:
        ``(fpr, tpr, thresholds)`` starting at (0, 0) with threshold +inf; ``thresholds`` decrease.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = _as_bool(targets, "targets").ravel()
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], targets[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1] if s.size else np.array([], dtype=int)
    tp = np.cumsum(t)[last_of_tie]
    fp = np.cumsum(~t)[last_of_tie]
    n_pos, n_neg = max(int(t.sum()), 1), max(int((~t).sum()), 1)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def calibrate_thresholds(
    scores: np.ndarray,
    targets: np.ndarray,
    valid: np.ndarray | None,
    grid: Sequence[float] | str = DEFAULT_THRESHOLD_GRID,
) -> np.ndarray:
    """Per-label decision thresholds that maximise F1 on a calibration (validation) set.

    Args:
        scores: (N, C) probabilities on the validation set.
        targets: (N, C) booleans.
        valid: (N, C) booleans; uncertain entries (False) take no part. None = all valid.
        grid: candidate thresholds. The default is the reference's {0.3, ..., 0.9}. ``"fine"`` searches 0.01
            steps; ``"midpoints"`` searches, per label, every midpoint between consecutive distinct valid scores
            (the exact F1 maximiser on the validation set, hence the most prone to over-fit it).

    Returns:
        (C,) thresholds. Ties in F1 go to the smaller threshold (the reference's first-best rule). Labels with
        no valid positive get :data:`NO_POSITIVE_THRESHOLD`; labels whose F1 is 0 at every candidate get
        :data:`NO_SKILL_THRESHOLD`.
    """
    scores, targets, valid = check_inputs(scores, targets, valid)
    fixed = _resolve_grid(grid)
    n_labels = scores.shape[1]
    thresholds = np.full(n_labels, NO_POSITIVE_THRESHOLD)
    for c in range(n_labels):
        keep = valid[:, c]
        s, y = scores[keep, c], targets[keep, c]
        if not y.any():
            continue
        candidates = fixed if fixed is not None else _midpoints(s)
        if candidates.size == 0:  # every valid score is equal: any threshold at or below it predicts all
            candidates = np.array([s[0]])
        f1 = _f1_at(np.sort(s[y]), np.sort(s[~y]), candidates)
        best = int(np.argmax(f1))  # argmax takes the first maximum: the smallest threshold among ties
        thresholds[c] = candidates[best] if f1[best] > 0 else NO_SKILL_THRESHOLD
    return thresholds


def per_label_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    valid: np.ndarray | None,
    thresholds: np.ndarray | Sequence[float] | float,
    predictions: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """AUC, precision, recall and F1 of every label, counting only valid (non-uncertain) entries.

    Args:
        scores: (N, C) scores.
        targets: (N, C) booleans.
        valid: (N, C) booleans or None.
        thresholds: (C,) per-label thresholds (or one number for all).
        predictions: optional (N, C) booleans that replace ``scores >= thresholds``, for decisions after
            ontology post-processing (parents switched on, exclusive labels suppressed) as the reference
            evaluates them. AUC always uses the raw scores.

    Returns:
        Arrays of shape (C,): ``auc`` (nan unless the label has valid positives and negatives), ``precision``
        (nan when the label has no valid entry), ``recall`` and ``f1`` (nan without valid positives), and the
        counts ``positives``, ``negatives``, ``predicted`` (predicted among valid entries).
    """
    scores, targets, valid = check_inputs(scores, targets, valid)
    predicted = _predictions(scores, thresholds, predictions)
    n_labels = scores.shape[1]
    positives = (targets & valid).sum(axis=0)
    negatives = (~targets & valid).sum(axis=0)
    n_predicted = (predicted & valid).sum(axis=0)
    true_pos = (predicted & targets & valid).sum(axis=0)
    precision, recall, f1 = _prf(true_pos, n_predicted, positives)
    precision[(positives + negatives) == 0] = np.nan
    auc = np.full(n_labels, np.nan)
    for c in np.nonzero((positives > 0) & (negatives > 0))[0]:
        keep = valid[:, c]
        auc[c] = roc_auc(scores[keep, c], targets[keep, c])
    return {
        "auc": auc,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positives": positives.astype(np.int64),
        "negatives": negatives.astype(np.int64),
        "predicted": n_predicted.astype(np.int64),
    }


def mean_per_class(
    metrics: Mapping[str, np.ndarray], labels_mask: np.ndarray | None = None
) -> dict[str, float]:
    """Per-class (per-label) averages, the paper's headline numbers.

    Averages over the labels that have both valid positives and negatives in the evaluated set (and are in
    ``labels_mask`` when given), as the paper does; ``num_labels`` says how many that was.
    """
    positives = np.asarray(metrics["positives"])
    negatives = np.asarray(metrics["negatives"])
    used = (positives > 0) & (negatives > 0)
    if labels_mask is not None:
        labels_mask = _as_bool(labels_mask, "labels_mask")
        if labels_mask.shape != used.shape:
            raise invalid("labels_mask", f"must have shape {used.shape}", labels_mask.shape)
        used &= labels_mask
    out = {name: _nanmean(np.asarray(metrics[name], dtype=np.float64)[used]) for name in METRIC_NAMES}
    out["num_labels"] = int(used.sum())
    return out


def micro_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    valid: np.ndarray | None,
    thresholds: np.ndarray | Sequence[float] | float,
    predictions: np.ndarray | None = None,
) -> dict[str, float]:
    """Micro-averaged (pooled over all valid lesion-label entries) precision, recall, F1 and AUC.

    The reference reports the pooled precision/recall/F1 as "overall"; frequent labels dominate them. ``auc``
    pools all valid entries' scores; ``weighted_auc`` is the reference's per-label AUC weighted by positives.
    """
    scores, targets, valid = check_inputs(scores, targets, valid)
    predicted = _predictions(scores, thresholds, predictions)
    true_pos = np.array([(predicted & targets & valid).sum()])
    precision, recall, f1 = _prf(
        true_pos, np.array([(predicted & valid).sum()]), np.array([(targets & valid).sum()])
    )
    per_label = per_label_metrics(scores, targets, valid, thresholds, predictions)
    weights = per_label["positives"] * np.isfinite(per_label["auc"])
    weighted_auc = (
        float(np.nansum(per_label["auc"] * weights) / weights.sum()) if weights.sum() else float("nan")
    )
    return {
        "precision": float(precision[0]),
        "recall": float(recall[0]),
        "f1": float(f1[0]),
        "auc": roc_auc(scores[valid], targets[valid]),
        "weighted_auc": weighted_auc,
    }


def frequency_bins(
    train_positive_counts: np.ndarray | Sequence[int], bins: Sequence[float] = DEFAULT_FREQUENCY_BINS
) -> tuple[np.ndarray, list[str]]:
    """Assigns each label to a training-frequency bin, for the paper's accuracy-vs-frequency breakdown.

    Args:
        train_positive_counts: (C,) number of training lesions positive for each label.
        bins: increasing lower edges; bin i holds counts in ``[bins[i], bins[i+1])``, the last is open.

    Returns:
        ``(bin_index (C,), names)`` with names such as ``"50-99"`` and ``">=1000"``.

    Example:
        >>> frequency_bins([17, 60, 5000], bins=(0, 50, 1000))
        (array([0, 1, 2]), ['0-49', '50-999', '>=1000'])
    """
    counts = np.asarray(train_positive_counts, dtype=np.float64).ravel()
    edges = np.asarray(bins, dtype=np.float64).ravel()
    if edges.size == 0 or np.any(np.diff(edges) <= 0):
        raise invalid("bins", "must be a non-empty strictly increasing sequence of lower edges", list(bins))
    if np.any(counts < edges[0]) or not np.all(np.isfinite(counts)):
        raise invalid(
            "train_positive_counts",
            f"must be finite and >= the first bin edge {edges[0]:g}",
            counts[(counts < edges[0]) | ~np.isfinite(counts)][:3].tolist(),
        )
    index = np.searchsorted(edges, counts, side="right") - 1
    names = [
        f"{lo:g}-{hi - 1:g}" if float(hi).is_integer() and float(lo).is_integer() else f"{lo:g}-<{hi:g}"
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    names.append(f">={edges[-1]:g}")
    return index, names


def breakdown(
    metrics: Mapping[str, np.ndarray],
    label_classes: Sequence[str],
    train_positive_counts: np.ndarray | Sequence[int],
    bins: Sequence[float] = DEFAULT_FREQUENCY_BINS,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per-class-averaged metrics by label class and by training frequency, as the paper's analysis.

    Args:
        metrics: output of :func:`per_label_metrics`.
        label_classes: (C,) ontology class of each label: "bodypart", "type" or "attribute".
        train_positive_counts: (C,) training positives per label.
        bins: frequency bin lower edges (see :func:`frequency_bins`).

    Returns:
        ``{"all": {...}, "by_class": {class: {...}}, "by_frequency": {bin name: {...}}}``, each leaf the output of
        :func:`mean_per_class` (classes and bins with no usable label have nan metrics and ``num_labels`` 0).
    """
    n_labels = np.asarray(metrics["positives"]).shape[0]
    classes = np.asarray([str(c) for c in label_classes])
    if classes.shape != (n_labels,):
        raise invalid("label_classes", f"must hold one class per label ({n_labels})", classes.shape)
    unknown = sorted(set(classes.tolist()) - set(LABEL_CLASSES))
    if unknown:
        raise invalid("label_classes", f"must be among {list(LABEL_CLASSES)}", unknown)
    counts = np.asarray(train_positive_counts).ravel()
    if counts.shape != (n_labels,):
        raise invalid("train_positive_counts", f"must hold one count per label ({n_labels})", counts.shape)
    bin_index, names = frequency_bins(counts, bins)
    return {
        "all": mean_per_class(metrics),
        "by_class": {cls: mean_per_class(metrics, classes == cls) for cls in LABEL_CLASSES},
        "by_frequency": {name: mean_per_class(metrics, bin_index == i) for i, name in enumerate(names)},
    }


def check_inputs(
    scores: np.ndarray, targets: np.ndarray, valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates and converts (scores, targets, valid) to float64 (N, C), bool (N, C), bool (N, C)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise invalid("scores", "must be a 2-D array (lesions, labels)", scores.shape)
    if not np.all(np.isfinite(scores)):
        raise invalid("scores", "must be finite", scores[~np.isfinite(scores)][:3].tolist())
    targets = _as_bool(targets, "targets")
    if targets.shape != scores.shape:
        raise invalid("targets", f"must have the shape of scores {scores.shape}", targets.shape)
    if valid is None:
        valid = np.ones(scores.shape, dtype=bool)
    valid = _as_bool(valid, "valid")
    if valid.shape != scores.shape:
        raise invalid("valid", f"must have the shape of scores {scores.shape}", valid.shape)
    return scores, targets, valid


def _as_bool(values: np.ndarray, argument: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == bool:
        return array
    if array.size and not np.all(np.isin(array, (0, 1))):
        raise invalid(argument, "must hold booleans or 0/1", np.unique(array)[:5].tolist())
    return array.astype(bool)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse.ravel()]


def _resolve_grid(grid: Sequence[float] | str) -> np.ndarray | None:
    """The fixed candidate array, or None for per-label midpoints."""
    if isinstance(grid, str):
        if grid == "fine":
            return np.asarray(FINE_THRESHOLD_GRID)
        if grid == "midpoints":
            return None
        raise invalid("grid", 'must be a sequence of thresholds, "fine" or "midpoints"', grid)
    candidates = np.asarray(grid, dtype=np.float64).ravel()
    if candidates.size == 0 or not np.all(np.isfinite(candidates)):
        raise invalid("grid", "must be a non-empty sequence of finite thresholds", list(grid))
    return np.sort(candidates)


def _midpoints(values: np.ndarray) -> np.ndarray:
    distinct = np.unique(values)
    return (distinct[:-1] + distinct[1:]) / 2.0


def _f1_at(pos_sorted: np.ndarray, neg_sorted: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """F1 of ``score >= t`` for each candidate t, from sorted positive and negative scores."""
    tp = pos_sorted.size - np.searchsorted(pos_sorted, candidates, side="left")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, candidates, side="left")
    fn = pos_sorted.size - tp
    # 2PR/(P+R) == 2TP/(2TP+FP+FN) whenever TP > 0; with TP == 0 both are 0 under the reference's conventions.
    return np.where(tp > 0, 2.0 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def _predictions(
    scores: np.ndarray, thresholds: np.ndarray | Sequence[float] | float, predictions: np.ndarray | None
) -> np.ndarray:
    if predictions is not None:
        predictions = _as_bool(predictions, "predictions")
        if predictions.shape != scores.shape:
            raise invalid("predictions", f"must have the shape of scores {scores.shape}", predictions.shape)
        return predictions
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim == 0:
        th = np.full(scores.shape[1], float(th))
    if th.shape != (scores.shape[1],) or np.any(np.isnan(th)):
        raise invalid("thresholds", f"must be one number per label ({scores.shape[1]}), not nan", th.shape)
    return scores >= th[None, :]


def _prf(true_pos: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1 with the reference's conventions (see the module docstring)."""
    true_pos, predicted, positives = (
        np.asarray(a, dtype=np.float64) for a in (true_pos, predicted, positives)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_pos / predicted, 1.0)
        recall = np.where(positives > 0, true_pos / positives, np.nan)
        total = precision + recall
        f1 = np.where(total > 0, 2.0 * precision * recall / total, 0.0)
    f1[np.isnan(recall)] = np.nan
    return precision, recall, f1


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
