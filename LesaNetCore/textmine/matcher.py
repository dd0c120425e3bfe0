"""Finds ontology terms in report text: synonyms normalised to terms, longest match first.

The synonym table is compiled once into a trie over normalised token forms (:mod:`.preprocess`: lower case,
WordNet noun lemma, organ noun for relational adjectives), so "Nodules", "nodule", "pulmonary nodules" and
"lung nodule" meet the same keys and a sentence is scanned in one left-to-right pass. At each token the longest
synonym wins; hyphenated words match by their parts ("wedge shaped") or their joined form ("paraaortic").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import invalid
from .preprocess import Lemmatizer, Token, tokenize

if TYPE_CHECKING:
    from ..ontology import Ontology

_END = "\0"  # trie key holding the term of the synonym that ends at this node
_LATERALITY = frozenset({"left", "right"})


@dataclass(frozen=True, slots=True)
class Mention:
    """One term found in a sentence: ``text[start:end]`` is the surface; ``first``/``last`` index tokens."""

    term: str
    start: int
    end: int
    first: int
    last: int
    surface: str


class Matcher:
    """Compiled synonym trie of an ontology.

    Args:
        ontology: the terms to find; each synonym (and the name) maps to its term. When two terms share a
            surface form the earlier term in the ontology's order keeps it (terms are ordered by frequency in
            the official workbook, so the common reading wins).
        lemmatizer: the lemmatiser for synonyms and text (default: the process-wide one).

    Example:
        >>> from LesaNetCore.ontology import load_default_ontology
        >>> matcher = Matcher(load_default_ontology())
        >>> [m.term for m in matcher.find("Hepatic metastases")][-1]
        'metastasis'
    """

    def __init__(self, ontology: Ontology, lemmatizer: Lemmatizer | None = None) -> None:
        if len(ontology) == 0:
            raise invalid("ontology", "must hold at least one term", ontology)
        self.ontology = ontology
        self._lemmatizer = lemmatizer
        self._trie: dict = {}
        self.conflicts: list[tuple[str, str, str]] = []  # (synonym, kept term, dropped term)
        # Words that end a laterality's reach: "left kidney and right renal cyst" must not give left kidney.
        self._trie_words_blocking = frozenset({"and", "or", "with", "to", "of", "versus", "vs", "from", "than"})
        for name in ontology.names:
            term = ontology.term(name)
            for synonym in dict.fromkeys((name.lower(), *term.synonyms)):
                self._add(synonym, name)

    def _add(self, synonym: str, name: str) -> None:
        tokens = tokenize(synonym, self._lemmatizer)
        keys = [tuple(t.norm for t in tokens)]
        if any(t.joined for t in tokens):
            keys.append(tuple(_joined_norms(tokens)))
        for key in keys:
            if not key:
                continue
            node = self._trie
            for part in key:
                node = node.setdefault(part, {})
            kept = node.setdefault(_END, name)
            if kept != name:
                self.conflicts.append((synonym, kept, name))

    def find(self, text: str) -> list[Mention]:
        """Mentions in ``text``, left to right, with character offsets into ``text``."""
        return self.find_in_tokens(text, tokenize(text, self._lemmatizer))

    def find_in_tokens(self, text: str, tokens: Sequence[Token], nested: bool = True) -> list[Mention]:
        """Mentions over already tokenised ``text`` (the miner tokenises once for matching and relevance).

        Args:
            nested: also report the terms inside a longest match that its term does not already imply: the
                head of "common iliac lymph node" is "iliac lymph node", that of "axillary adenopathy" is
                "adenopathy" (lymphadenopathy). A laterality word a few modifiers before a body part joins it
                when the ontology has the lateral term ("left anterior renal mass" -> left kidney).
        """
        mentions: list[Mention] = []
        i, n = 0, len(tokens)
        while i < n:
            best = self._longest(tokens, i, n)
            if best is None:
                i += 1
                continue
            j, name = best
            start, end = tokens[i].start, tokens[j - 1].end
            mentions.append(Mention(name, start, end, i, j - 1, text[start:end]))
            if nested:
                self._add_nested(text, tokens, i, j, name, mentions)
                self._add_lateral(text, tokens, i, j, name, mentions)
            i = j
        return mentions

    def _add_nested(self, text: str, tokens: Sequence[Token], i: int, j: int, name: str,
                    mentions: list[Mention]) -> None:
        implied = self.ontology.ancestors(name) | {name}
        excluded = self.ontology.exclusive_with(name)  # "not calcified" (noncalcified) holds no "calcified"
        k = i + 1
        while k < j:
            inner = self._longest(tokens, k, j)
            if inner is None:
                k += 1
                continue
            end_index, inner_name = inner
            if inner_name not in implied and inner_name not in excluded:
                start, end = tokens[k].start, tokens[end_index - 1].end
                mentions.append(Mention(inner_name, start, end, k, end_index - 1, text[start:end]))
                implied = implied | self.ontology.ancestors(inner_name) | {inner_name}
            k = end_index

    def _add_lateral(self, text: str, tokens: Sequence[Token], i: int, j: int, name: str,
                     mentions: list[Mention]) -> None:
        if tokens[i].norm in _LATERALITY or self.ontology.term(name).label_class != "bodypart":
            return
        for back in range(i - 1, max(i - 4, -1), -1):
            norm = tokens[back].norm
            if norm in _LATERALITY:
                node = self._trie.get(norm)
                for k in range(i, j):
                    node = None if node is None else node.get(tokens[k].norm)
                if node is not None and _END in node and node[_END] != name:
                    start, end = tokens[back].start, tokens[j - 1].end
                    mentions.append(Mention(node[_END], start, end, back, j - 1, text[start:end]))
                return
            if not norm.isalpha() or norm in self._trie_words_blocking:
                return

    def _longest(self, tokens: Sequence[Token], i: int, n: int) -> tuple[int, str] | None:
        """(index after the last token, term) of the longest synonym starting at token ``i``, or None."""
        trie = self._trie
        best: tuple[int, str] | None = None
        starts = [(trie, i)]
        if tokens[i].joined is not None:
            joined, width = tokens[i].joined
            node = trie.get(joined)
            if node is not None and i + width <= n:
                starts.append((node, i + width))
        for node, j in starts:
            if node is not trie and _END in node and (best is None or j > best[0]):
                best = (j, node[_END])
            while j < n:
                node = node.get(tokens[j].norm)
                if node is None:
                    break
                j += 1
                if _END in node and (best is None or j > best[0]):
                    best = (j, node[_END])
        return best


def _joined_norms(tokens: Sequence[Token]) -> list[str]:
    out: list[str] = []
    skip = 0
    for token in tokens:
        if skip:
            skip -= 1
            continue
        if token.joined is not None:
            out.append(token.joined[0])
            skip = token.joined[1] - 1
        else:
            out.append(token.norm)
    return out
