"""Text mining (LesaNet Sec. 3.2): report sentences with bookmarks -> relevant / uncertain / irrelevant labels.

Modules: ``nltk_setup`` (WordNet 3.0 offline), ``preprocess`` (tokens, offsets, lemmas), ``matcher`` (synonym
trie), ``relevance_rules`` (negation, hedging, bookmark scope), ``relevance_cnn`` (the learned classifier),
``relevance_combine`` (how they combine), ``annotated`` (the shipped annotated pairs), ``mine`` (the miner and
the split-file layout), ``evaluate`` (hand-labeled scores and recall ceiling). Throughput is measured by
``LesaNetCore.bench.mine``.
"""

from __future__ import annotations

import importlib

# Names resolve on first use (PEP 562): importing the package stays light, and
# ``python -m LesaNetCore.textmine.relevance_cnn`` does not find its module already imported.
_HOME = {
    "evaluate_hand_labeled": "evaluate", "recoverable_labels": "evaluate",
    "Matcher": "matcher", "Mention": "matcher",
    "JudgedMention": "mine", "MinedLabels": "mine", "TextMiner": "mine", "infer_terms": "mine",
    "split_sentences": "mine", "to_split_layout": "mine",
    "build_wordnet_from_debian": "nltk_setup", "ensure_wordnet": "nltk_setup",
    "Token": "preprocess", "tokenize": "preprocess",
    "RelevanceCNN": "relevance_cnn", "train_relevance_classifier": "relevance_cnn",
    "IRRELEVANT": "relevance_rules", "RELEVANT": "relevance_rules", "UNCERTAIN": "relevance_rules",
    "rule_details": "relevance_rules", "rule_relevance": "relevance_rules",
}


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "IRRELEVANT",
    "JudgedMention",
    "Matcher",
    "Mention",
    "MinedLabels",
    "RELEVANT",
    "RelevanceCNN",
    "TextMiner",
    "Token",
    "UNCERTAIN",
    "build_wordnet_from_debian",
    "ensure_wordnet",
    "evaluate_hand_labeled",
    "infer_terms",
    "recoverable_labels",
    "rule_details",
    "rule_relevance",
    "split_sentences",
    "to_split_layout",
    "tokenize",
    "train_relevance_classifier",
]
