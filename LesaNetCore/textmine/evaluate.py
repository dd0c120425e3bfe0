"""Scores mined labels against radiologists' labels (``hand_labeled_dev.json``), with the recall ceiling.

The hand-labeled file gives, per lesion, the radiologist's description ``text`` and the labels they assigned
with parents (``expanded_terms``). Both sides are restricted to the official label list, and the official
ontology mines the text (no bookmarks: each description is one lesion). Radiologists also assigned labels
that the text never states (they looked at the image), so recall cannot reach 1: a label counts as
*recoverable* when one of its synonyms, or a synonym of one of its descendants, occurs in the text, and the
share of recoverable gold labels is reported as the recall ceiling.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import LesaNetError, invalid


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "tp": tp, "fp": fp, "fn": fn}


def read_hand_labeled(path: str | os.PathLike) -> list[dict]:
    """Records with ``text`` and ``expanded_terms`` (and ``lesion_idx``) from a hand-labeled JSON file."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise LesaNetError(f"hand_labeled: must be a readable JSON file ({err}), but got {str(path)!r}") from err
    if not isinstance(records, list):
        raise invalid("hand_labeled", f"must hold a JSON list of records ({path})", type(records).__name__)
    for k, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) \
                or not isinstance(rec.get("expanded_terms"), list):
            raise invalid("hand_labeled", f"record {k} of {path} must have 'text' and 'expanded_terms'", rec)
    return records


def recoverable_labels(text: str, ontology, labels: Sequence[str], matcher=None) -> set[str]:
    """Labels of ``labels`` that the text states: a synonym of the label or of a descendant occurs in it.

    "Occurs" is either literal (at a word start, case-insensitive) or in the normalised form the matcher
    finds (plurals, "hepatic" for liver, "para-aortic" for paraaortic); a composite counts when all its
    parents occur (:func:`.mine.infer_terms`, irrespective of negation or hedging).
    """
    lower = text.lower()
    out = set()
    if matcher is not None:
        from .mine import infer_terms

        found = {m.term for m in matcher.find(text)}
        stated = set(ontology.expand(found | infer_terms(ontology, found)))
        out |= stated & set(labels)
    for name in labels:
        if name in out:
            continue
        for term in (name, *ontology.descendants(name)):
            forms = (term.lower(), *ontology.term(term).synonyms)
            if any(re.search(r"(?<![a-z])" + re.escape(form), lower) for form in forms):
                out.add(name)
                break
    return out


def evaluate_hand_labeled(hand_labeled: str | os.PathLike, ontology, term_list: Sequence[str],
                          method: str = "combined", miner=None) -> dict:
    """Micro and per-label precision / recall / F1 of ``expanded`` against ``expanded_terms``.

    Args:
        hand_labeled: ``hand_labeled_dev.json``.
        ontology: the official ontology (:func:`LesaNetCore.ontology.read_official_ontology`).
        term_list: the official label list (``read_label_split(...).term_list``); both sides are restricted to it.
        method: relevance method of the miner (:class:`.mine.TextMiner`).
        miner: a ready miner (built from ``ontology`` and ``term_list`` when None).

    Returns:
        ``{"lesions", "micro": {precision, recall, f1, tp, fp, fn}, "recall_ceiling", "per_label": {term: {...,
        "support"}}, "errors": [first mismatches]}``.
    """
    from .mine import TextMiner

    records = read_hand_labeled(hand_labeled)
    labels = set(term_list)
    miner = miner or TextMiner(ontology, labels=term_list, method=method)
    tp = fp = fn = 0
    per = {name: [0, 0, 0] for name in term_list}
    recoverable = gold_total = 0
    errors = []
    for rec in records:
        predicted = set(miner.mine(rec["text"]).expanded) & labels
        gold = set(rec["expanded_terms"]) & labels
        tp += len(predicted & gold)
        fp += len(predicted - gold)
        fn += len(gold - predicted)
        for name in predicted & gold:
            per[name][0] += 1
        for name in predicted - gold:
            per[name][1] += 1
        for name in gold - predicted:
            per[name][2] += 1
        gold_total += len(gold)
        recoverable += len(gold & recoverable_labels(rec["text"], ontology, sorted(gold), miner.matcher))
        if predicted != gold and len(errors) < 20:
            errors.append({"text": rec["text"], "false_positives": sorted(predicted - gold),
                           "false_negatives": sorted(gold - predicted)})
    per_label = {}
    for name, (a, b, c) in per.items():
        if a + b + c:
            per_label[name] = {**_prf(a, b, c), "support": a + c}
    return {"lesions": len(records), "method": miner.method, "micro": _prf(tp, fp, fn),
            "recall_ceiling": recoverable / gold_total if gold_total else 0.0, "per_label": per_label,
            "errors": errors}


def format_report(result: dict, top: int = 15) -> str:
    """A short text report: micro scores, the recall ceiling and the labels with the most errors."""
    m = result["micro"]
    lines = [
        f"hand-labeled lesions: {result['lesions']} (method {result['method']})",
        f"micro precision {m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}  "
        f"(tp {m['tp']}, fp {m['fp']}, fn {m['fn']})",
        f"recall ceiling (gold labels whose synonyms or descendants' synonyms occur in the text): "
        f"{result['recall_ceiling']:.4f}",
        "labels with the most errors (precision / recall / F1 / support):",
    ]
    worst = sorted(result["per_label"].items(), key=lambda kv: -(kv[1]["fp"] + kv[1]["fn"]))[:top]
    for name, s in worst:
        lines.append(f"  {name:32s} {s['precision']:.2f} / {s['recall']:.2f} / {s['f1']:.2f} / {s['support']}")
    return "\n".join(lines)
