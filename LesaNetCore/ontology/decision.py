"""Turning per-label scores into a label set that obeys the ontology.

A multilabel classifier thresholds each label on its own, so it can say "left lower lobe" and "right lung", or
"lung nodule" without "lung". Users expect an answer that could be true: exclusivity is enforced first (of
two exclusive positives the lower-scoring one is dropped, visiting positives from the highest score down), then
every kept label turns its ancestors on. Because exclusivity propagates down the hierarchy, turning ancestors on
can never re-introduce a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import LesaNetError
from .core import Ontology, scores_by_term


def decide(
    ontology: Ontology,
    scores: Mapping[str, float] | Iterable[float],
    thresholds: Mapping[str, float] | Iterable[float] | float,
) -> frozenset[str]:
    """The ontology-consistent positive label set.

    Args:
        ontology: the label ontology (typically the model's label list as an ontology subset).
        scores: probability per term, as a mapping or aligned with ``ontology.names``. Terms missing from a
            mapping count as negative.
        thresholds: one threshold for all terms, or per term (mapping or aligned sequence).

    Example:
        >>> from LesaNetCore.ontology import Ontology, Term
        >>> onto = Ontology([Term("lung", "bodypart"), Term("liver", "bodypart", exclusive=frozenset({"lung"})),
        ...                  Term("lung nodule", "type", parents=frozenset({"lung"}))])
        >>> sorted(decide(onto, {"lung": 0.2, "liver": 0.6, "lung nodule": 0.7}, 0.5))
        ['lung', 'lung nodule']
    """
    score = scores_by_term(ontology, scores)
    if isinstance(thresholds, (int, float)):
        threshold = dict.fromkeys(score, float(thresholds))
    else:
        threshold = scores_by_term(ontology, thresholds)
        missing = sorted(set(score) - set(threshold))
        if missing:
            raise LesaNetError(f"thresholds: must give a threshold for every scored term, but got none for {missing[0]!r}")
    positives = sorted((t for t in score if score[t] >= threshold[t]), key=lambda t: (-score[t], t))
    kept: list[str] = []
    blocked: set[str] = set()
    for term in positives:
        if term in blocked:
            continue
        kept.append(term)
        blocked |= ontology.exclusive_with(term)
    return ontology.expand(kept)
