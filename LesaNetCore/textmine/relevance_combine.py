"""How the rules and the learned classifier combine into one relevance per pair.

Measured on held-out hand-written pairs (``relevance_heldout.txt``, written after both were fixed), the rules
beat the classifier overall: cue words (negation, hedging) are exact for rules and rare in a few hundred
training pairs. Where the rules are weak is *which* of several nearby lesions a mention describes: they judge by
distance, and two bookmark groups can be almost equally near. So the combination is:

* cues always come from the rules (a negated mention is never relevant, a hedged one is uncertain);
* the lesion a mention belongs to comes from the rules, except where they call it ambiguous (two bookmark
  groups within ``AMBIGUOUS_MARGIN``, :func:`.relevance_rules.rule_details`): there the classifier decides
  whether the mention is about the target (its probability of *irrelevant* below one half) or not.
"""

from __future__ import annotations

import numpy as np

from .relevance_rules import IRRELEVANT, RELEVANCE_CLASSES, RuleDetails

_IRRELEVANT_INDEX = RELEVANCE_CLASSES.index(IRRELEVANT)


def combine_relevance(details: RuleDetails, proba: np.ndarray) -> list[str]:
    """One label per pair: the rules', with the classifier deciding ownership where the rules are ambiguous."""
    out = []
    for label, cue, ambiguous, p in zip(details.labels, details.cue_labels, details.ambiguous, proba, strict=True):
        if ambiguous:
            label = IRRELEVANT if p[_IRRELEVANT_INDEX] >= 0.5 else cue
        out.append(label)
    return out
