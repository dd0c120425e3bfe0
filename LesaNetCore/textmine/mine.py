"""Report text -> labels of the BOOKMARK lesion: relevant, uncertain, irrelevant, and their expansion.

One :class:`TextMiner` holds the compiled synonym trie, the relevance classifier and the label list, so mining
many sentences costs one tokenisation, one trie scan and one vectorised classifier call per sentence.

Per text: split into sentences; find mentions (:mod:`.matcher`); judge each against the BOOKMARK lesion
(:mod:`.relevance_rules`, :mod:`.relevance_cnn`, :mod:`.relevance_combine`); a term takes its best judgement
over its mentions (relevant > uncertain > irrelevant). Composite terms are then inferred (:func:`infer_terms`)
and ``expanded`` = relevant ∪ uncertain ∪ their ancestors, as LesaNet trains on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import invalid
from .matcher import Matcher, Mention
from .preprocess import BOOKMARK, tokenize
from .relevance_rules import IRRELEVANT, RELEVANT, UNCERTAIN, rule_details

METHODS = ("combined", "rules", "cnn")
_RANK = {IRRELEVANT: 0, UNCERTAIN: 1, RELEVANT: 2}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])|\n+")
_LATERAL_PREFIXES = ("left ", "right ")


@dataclass(frozen=True)
class JudgedMention:
    """A mention and its relevance to the BOOKMARK lesion; offsets index the whole input text."""

    term: str
    start: int
    end: int
    surface: str
    relevance: str


@dataclass(frozen=True)
class MinedLabels:
    """Labels of one lesion (term names, in ontology order); ``expanded`` is what training uses."""

    id: object
    relevant: tuple[str, ...]
    uncertain: tuple[str, ...]
    irrelevant: tuple[str, ...]
    expanded: tuple[str, ...]
    mentions: tuple[JudgedMention, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict:
        """The ``lesanet mine`` output record."""
        return {"id": self.id, "relevant": list(self.relevant), "uncertain": list(self.uncertain),
                "irrelevant": list(self.irrelevant), "expanded": list(self.expanded)}


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: a full stop, ! or ? followed by a capital, digit or bracket, or a newline."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def infer_terms(ontology, direct: Iterable[str]) -> set[str]:
    """Composite terms implied by terms found together, e.g. liver + mass -> "liver mass".

    A term with two or more direct parents is inferred when its parents are all covered:

    * a *type* composite ("liver mass", "kidney cyst", "lymphadenopathy") when every parent is itself found, or
      found in its left/right form ("right renal cyst" -> right kidney + cyst -> kidney cyst). A parent reached
      only through a deeper term does not count: radiologists write "right lower lobe nodule" without meaning
      the lexicalised "lung nodule";
    * a *body part* composite (lymph node stations: "axilla lymph node") when its parents are covered by the
      ancestors of at least two different found terms (axilla + adenopathy), never by one term's ancestry
      alone (a kidney lies in the retroperitoneum and the upper abdomen; that does not make it an adrenal).
    """
    direct = set(direct)
    if not direct:
        return set()
    composites, by_parent = _composites(ontology)
    lineage = {name: ontology.ancestors(name) | {name} for name in direct}
    found = set().union(*lineage.values())
    named = direct | {n.removeprefix("left ").removeprefix("right ") for n in direct if n.startswith(_LATERAL_PREFIXES)}
    inferred: set[str] = set()
    changed = True
    while changed:
        changed = False
        candidates = sorted({k for p in found for k in by_parent.get(p, ())})
        for k in candidates:
            name, parents, is_type = composites[k]
            if name in found or not parents <= found:
                continue
            if is_type:
                ok = parents <= named
            else:
                ok = not any(parents <= lin for lin in lineage.values()) \
                    and all(any(p in lin for lin in lineage.values()) for p in parents)
            if ok:
                inferred.add(name)
                lineage[name] = ontology.ancestors(name) | {name}
                found |= lineage[name]
                changed = True
    return inferred


_COMPOSITES: dict[int, tuple[object, list, dict]] = {}


def _composites(ontology) -> tuple[list[tuple[str, frozenset[str], bool]], dict[str, list[int]]]:
    """Terms with two or more direct parents, and an index from parent to them (compiled once per ontology)."""
    entry = _COMPOSITES.get(id(ontology))
    if entry is None or entry[0] is not ontology:
        composites, by_parent = [], {}
        for name in ontology.names:
            parents = ontology.parents(name)
            if len(parents) >= 2:
                for p in parents:
                    by_parent.setdefault(p, []).append(len(composites))
                composites.append((name, frozenset(parents), ontology.term(name).label_class == "type"))
        entry = _COMPOSITES[id(ontology)] = (ontology, composites, by_parent)
    return entry[1], entry[2]


class TextMiner:
    """Mines lesion labels from report sentences.

    Args:
        ontology: the terms to find (default: the project's default ontology).
        labels: restrict every output list to these term names (the official 171-label ``term_list``).
        method: "combined" (default; rules, with the classifier resolving ambiguous lesion ownership),
            "rules" or "cnn" (the classifier alone; cue words then come from it too).
        classifier: a :class:`.relevance_cnn.RelevanceCNN` (default: the shipped weights; unused by "rules").

    Example:
        >>> miner = TextMiner()
        >>> miner.mine("Large nodule BOOKMARK in the liver, no calcification").relevant[:1]
        ('liver',)
    """

    def __init__(self, ontology=None, labels: Sequence[str] | None = None, method: str = "combined",
                 classifier=None) -> None:
        if method not in METHODS:
            raise invalid("method", f"must be one of {', '.join(METHODS)}", method)
        if ontology is None:
            from ..ontology import load_default_ontology

            ontology = load_default_ontology()
        self.ontology = ontology
        self.matcher = Matcher(ontology)
        self.method = method
        if labels is not None:
            unknown = [name for name in labels if name not in ontology]
            if unknown:
                raise invalid("labels", "must all be terms of the ontology", unknown[:5])
        self.labels = None if labels is None else frozenset(labels)
        self._order = {name: i for i, name in enumerate(ontology.names)}
        if classifier is None and method != "rules":
            from .relevance_cnn import RelevanceCNN

            classifier = RelevanceCNN.load()
        self.classifier = classifier

    def judge(self, text: str) -> list[JudgedMention]:
        """Every mention of ``text`` with its relevance to the BOOKMARK lesion."""
        sentences = split_sentences(text)
        any_bookmark = BOOKMARK in text or "OTHER_BMK" in text
        judged: list[JudgedMention] = []
        for a, b in sentences:
            sentence = text[a:b]
            tokens = tokenize(sentence)
            mentions = self.matcher.find_in_tokens(sentence, tokens)
            if not mentions:
                continue
            if any_bookmark and BOOKMARK not in sentence:
                labels = [IRRELEVANT] * len(mentions)  # another lesion's sentence, or none's
            else:
                labels = self._relevance(tokens, mentions)
            judged.extend(JudgedMention(m.term, a + m.start, a + m.end, m.surface, label)
                          for m, label in zip(mentions, labels, strict=True))
        return judged

    def _relevance(self, tokens, mentions: Sequence[Mention]) -> list[str]:
        details = rule_details(tokens, mentions)
        if self.method == "rules" or (self.method == "combined" and not any(details.ambiguous)):
            return details.labels
        from .relevance_cnn import encode_pairs
        from .relevance_combine import combine_relevance
        from .relevance_rules import RELEVANCE_CLASSES

        spans = [(m.first, m.last) for m in mentions]
        model = self.classifier
        proba = model.predict_proba(encode_pairs(tokens, spans, BOOKMARK, model.n_buckets, model.max_distance))
        if self.method == "cnn":
            return [RELEVANCE_CLASSES[k] for k in proba.argmax(axis=1)]
        return combine_relevance(details, proba)

    def mine(self, text: str, id: object = None) -> MinedLabels:
        """Labels of the BOOKMARK lesion of ``text`` (of the one lesion when it has no bookmark)."""
        if not isinstance(text, str):
            raise invalid("text", "must be a string", text)
        judged = self.judge(text)
        best: dict[str, str] = {}
        for m in judged:
            if m.term not in best or _RANK[m.relevance] > _RANK[best[m.term]]:
                best[m.term] = m.relevance
        relevant = {t for t, r in best.items() if r == RELEVANT}
        uncertain = {t for t, r in best.items() if r == UNCERTAIN}
        relevant |= infer_terms(self.ontology, relevant)
        if uncertain:
            uncertain |= infer_terms(self.ontology, relevant | uncertain) - relevant
        uncertain -= relevant
        irrelevant = {t for t, r in best.items() if r == IRRELEVANT} - relevant - uncertain
        expanded = set(self.ontology.expand(relevant | uncertain))
        return MinedLabels(id, self._sorted(relevant), self._sorted(uncertain), self._sorted(irrelevant),
                           self._sorted(expanded), tuple(judged))

    def _sorted(self, names: Iterable[str]) -> tuple[str, ...]:
        if self.labels is not None:
            names = [n for n in names if n in self.labels]
        return tuple(sorted(names, key=self._order.__getitem__))


def to_split_layout(results: Sequence[MinedLabels], term_list: Sequence[str], prefix: str = "",
                    ontology=None) -> dict:
    """Mined labels in the official split file's layout: per lesion, label indices into ``term_list``.

    Keys are ``{prefix}lesion_idxs`` (the results' ids), ``{prefix}relevant_labels``,
    ``{prefix}uncertain_labels`` and ``{prefix}irrelevant_labels``, with ``prefix`` such as "train_". Given the
    ``ontology``, relevant and uncertain lists also hold their ancestors, as the official file does (an
    uncertain label that a relevant one implies counts as relevant). Terms outside ``term_list`` are dropped;
    indices are sorted and unique.

    Example:
        >>> r = MinedLabels(7, ("liver",), ("cyst",), ("lung",), ("liver", "cyst"))
        >>> to_split_layout([r], ["liver", "cyst", "lung"], "train_")["train_uncertain_labels"]
        [[1]]
    """
    index = {name: i for i, name in enumerate(term_list)}
    if len(index) != len(term_list):
        raise invalid("term_list", "must not repeat a term", sorted({t for t in term_list if list(term_list).count(t) > 1}))
    keys = [f"{prefix}{k}" for k in ("lesion_idxs", "relevant_labels", "uncertain_labels", "irrelevant_labels")]
    out: dict[str, list] = {k: [] for k in keys}
    for r in results:
        relevant, uncertain = set(r.relevant), set(r.uncertain)
        if ontology is not None:
            relevant = set(ontology.expand(relevant))
            uncertain = set(ontology.expand(uncertain))
        uncertain -= relevant
        irrelevant = set(r.irrelevant) - relevant - uncertain
        out[keys[0]].append(r.id)
        for key, names in zip(keys[1:], (relevant, uncertain, irrelevant), strict=True):
            out[key].append(sorted(index[t] for t in names if t in index))
    return out
