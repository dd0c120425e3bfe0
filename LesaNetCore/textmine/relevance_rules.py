"""Rule-based relevance of a mention to a bookmarked lesion: relevant, uncertain or irrelevant.

Three questions decide a (mention, bookmark) pair, in the spirit of NegEx/NegBio (Peng et al. 2018) but on
tokens rather than a dependency parse:

1. *Which lesion does the mention describe?* Bookmarks that follow each other with only commas or "and"
   between them form one group (one description for several lesions). A mention belongs to the nearest group,
   where distance counts the words between them that are not part of other mentions, a mention after its
   bookmark costs 1.5 per word (reports write "large nodule BOOKMARK in the right middle lobe": description
   first, location after) and 2 per "and"/"with" (the next item of a list), each comma crossed costs 3 and a
   clause boundary (". ; :" or "but", "however", "which", ...) costs 100. In a text with bookmarks, a
   sentence without one describes none of them; a text without bookmarks describes one lesion: every mention
   belongs to it.
2. *Is it negated?* Cues before the mention ("no", "without", "negative for", "free of", "resolved") reach
   forward to the end of the clause or to a comma that does not continue a list; cues after it ("has resolved",
   "is no longer seen", "not identified") reach back to the clause start. Pseudo-cues ("no change", "not
   significantly changed") are matched first and negate nothing.
3. *Is it hedged?* The same scopes for "likely", "possibly", "suspicious for", "may represent",
   "concerning for", "cannot exclude", "is suspected"; alternatives ("or", "versus", "vs") hedge the mentions
   joined on either side.

Negation wins over hedging; a cue inside the mention itself ("not calcified" = noncalcified) is part of the
term, not a cue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .matcher import Mention
from .preprocess import BOOKMARK, Token

RELEVANT = "relevant"
UNCERTAIN = "uncertain"
IRRELEVANT = "irrelevant"
RELEVANCE_CLASSES = (IRRELEVANT, UNCERTAIN, RELEVANT)  # class index order of the learned classifier too

_PSEUDO = (
    ("no", "significant", "interval", "change"), ("no", "significant", "change"), ("no", "interval", "change"),
    ("no", "definite", "change"), ("no", "change"), ("without", "significant", "change"),
    ("without", "interval", "change"), ("without", "change"), ("not", "significantly"), ("not", "changed"),
    ("no", "increase"), ("not", "increased"), ("no", "decrease"), ("not", "only"), ("no", "new"),
)
_PRE_NEGATION = (
    ("negative", "for"), ("free", "of"), ("absence", "of"), ("resolution", "of"), ("no", "longer"),
    ("rather", "than"), ("no",), ("not",), ("without",), ("resolved",), ("never",), ("nor",), ("neither",),
)
_POST_NEGATION = (
    ("no", "longer", "seen"), ("no", "longer", "visualized"), ("no", "longer", "present"), ("not", "seen"),
    ("not", "identified"), ("not", "visualized"), ("not", "present"), ("ruled", "out"), ("has", "resolved"),
    ("have", "resolved"), ("resolved",), ("absent",), ("disappeared",), ("removed",),
)
_PRE_HEDGE = (
    ("may", "represent"), ("might", "represent"), ("could", "represent"), ("may", "be"), ("might", "be"),
    ("could", "be"), ("concerning", "for"), ("worrisome", "for"), ("suspicious", "for"), ("suspicious", "of"),
    ("suggestive", "of"), ("question", "of"), ("cannot", "exclude"), ("can", "not", "exclude"),
    ("differential", "includes"), ("likely",), ("possibly",), ("possible",), ("probable",), ("probably",),
    ("presumed",), ("presumably",), ("suspicious",), ("suspected",), ("questionable",), ("equivocal",),
    ("suggesting",), ("suggests",), ("differential",), ("favor",), ("favored",),
)
_POST_HEDGE = (
    ("cannot", "be", "excluded"), ("can", "not", "be", "excluded"), ("not", "excluded"), ("is", "suspected"),
    ("are", "suspected"), ("is", "questionable"), ("is", "possible"), ("is", "likely"), ("are", "likely"),
)
_ALTERNATIVE = frozenset({"or", "versus", "vs", "vs."})
_CLAUSE_WORDS = frozenset({
    ".", ";", ":", "!", "?", "but", "however", "although", "though", "whereas", "which", "except", "while",
})
_GROUP_JOINERS = frozenset({",", "and", "&", "/", "-", "(", ")"})


def clause_boundaries(tokens: Sequence[Token]) -> list[bool]:
    """True at tokens that end a clause (punctuation and contrastive or relative words)."""
    return [t.lower in _CLAUSE_WORDS for t in tokens]


def bookmark_groups(tokens: Sequence[Token]) -> list[list[int]]:
    """Token indices of bookmarks, grouped when only commas, "and" or brackets stand between them."""
    groups: list[list[int]] = []
    last = None
    for i, token in enumerate(tokens):
        if not token.is_bookmark:
            continue
        if last is not None and all(tokens[k].lower in _GROUP_JOINERS for k in range(last + 1, i)):
            groups[-1].append(i)
        else:
            groups.append([i])
        last = i
    return groups


def mention_owners(tokens: Sequence[Token], mentions: Sequence[Mention], groups: Sequence[Sequence[int]]) \
        -> list[frozenset[int]]:
    """For each mention, the indices of the bookmark groups it describes (ties keep all nearest groups)."""
    return _owners_and_scores(tokens, mentions, groups)[0]


def _owners_and_scores(tokens: Sequence[Token], mentions: Sequence[Mention], groups: Sequence[Sequence[int]]) \
        -> tuple[list[frozenset[int]], list[list[float] | None]]:
    """Owners, and per mention its distance score to each group (None where it cannot matter)."""
    if not groups:
        return [frozenset() for _ in mentions], [None] * len(mentions)
    if len(groups) == 1 and not any(t.text in (".", "!", "?") for t in tokens[:-1]):
        return [frozenset((0,)) for _ in mentions], [None] * len(mentions)  # one lesion, one sentence
    clause = clause_boundaries(tokens)
    n = len(tokens)
    in_mention = [False] * n
    for m in mentions:
        for k in range(m.first, m.last + 1):
            in_mention[k] = True
    # Prefix sums: counts between two token positions in O(1). Words inside other mentions cost nothing
    # ("lobulated left axillary lesions BOOKMARK" is one noun phrase); a conjunction after a bookmark starts
    # the next item of a list ("... BOOKMARK and hilar nodes OTHER_BMK").
    sums = {"clause": [0], "comma": [0], "word": [0], "and": [0], "sentence": [0]}
    for k, token in enumerate(tokens):
        sums["clause"].append(sums["clause"][-1] + clause[k])
        sums["comma"].append(sums["comma"][-1] + (token.text == ","))
        sums["word"].append(sums["word"][-1] + (not in_mention[k]))
        sums["and"].append(sums["and"][-1] + (token.lower in ("and", "with")))
        sums["sentence"].append(sums["sentence"][-1] + (token.text in (".", "!", "?")))
    has_bookmark = [False] * (sums["sentence"][-1] + 1)  # per full sentence
    for group in groups:
        has_bookmark[sums["sentence"][group[0]]] = True

    def between(name: str, a: int, b: int) -> int:
        return sums[name][b] - sums[name][a]

    owners, all_scores = [], []
    for mention in mentions:
        if not has_bookmark[sums["sentence"][mention.first]]:
            owners.append(frozenset())  # a sentence without bookmarks describes none of them
            all_scores.append(None)
            continue
        scores = []
        for group in groups:
            if mention.last < group[0]:
                a, b, cost, conj = mention.last + 1, group[0], 1.0, 0
            elif mention.first > group[-1]:
                a, b, cost = group[-1] + 1, mention.first, 1.5
                conj = 2 * between("and", a, b)
            else:
                scores.append(0.0)
                continue
            scores.append(cost * between("word", a, b) + conj + 3 * between("comma", a, b)
                          + 100 * between("clause", a, b))
        best = min(scores)
        owners.append(frozenset(g for g, score in enumerate(scores) if score == best))
        all_scores.append(scores)
    return owners, all_scores


def cue_scopes(tokens: Sequence[Token], mentions: Sequence[Mention]) -> tuple[list[bool], list[bool]]:
    """Per mention: (negated, hedged)."""
    words = [t.lower for t in tokens]
    n = len(words)
    clause = clause_boundaries(tokens)
    mention_at = {m.first for m in mentions}
    inside = [False] * n
    for m in mentions:
        for k in range(m.first, m.last + 1):
            inside[k] = True
    neg_pre, neg_post, hedge_pre, hedge_post, alternatives = [], [], [], [], []
    targets = {"pseudo": None, "neg_post": neg_post, "hedge_post": hedge_post, "neg_pre": neg_pre,
               "hedge_pre": hedge_pre}
    i = 0
    while i < n:
        candidates = _CUES_BY_FIRST_WORD.get(words[i])
        if candidates is None or inside[i] or tokens[i].is_bookmark:
            if words[i] in _ALTERNATIVE and not inside[i]:
                alternatives.append(i)
            i += 1
            continue
        width = 0
        for kind, cue in candidates:
            if tuple(words[i:i + len(cue)]) == cue and not any(inside[i:i + len(cue)]):
                width = len(cue)
                target = targets[kind]
                if target is not None:
                    target.append((i, i + width))
                    # "resolved" both closes what came before and opens what follows.
                    if kind == "neg_post" and cue == ("resolved",):
                        neg_pre.append((i, i + 1))
                break
        if not width and words[i] in _ALTERNATIVE:
            alternatives.append(i)
        i += max(width, 1)

    def forward(end: int) -> tuple[int, int]:
        k = end
        while k < n and not clause[k]:
            if tokens[k].text == "," and k + 1 < n and k + 1 not in mention_at \
                    and words[k + 1] not in ("or", "nor", "and"):
                break
            k += 1
        return end, k

    def backward(start: int) -> tuple[int, int]:
        k = start
        while k > 0 and not clause[k - 1] and tokens[k - 1].text != ",":
            k -= 1
        return k, start

    negated_spans = [forward(e) for _, e in neg_pre] + [backward(s) for s, _ in neg_post]
    hedged_spans = [forward(e) for _, e in hedge_pre] + [backward(s) for s, _ in hedge_post]
    negated, hedged = [], []
    for m in mentions:
        negated.append(any(a <= m.first and m.last < b for a, b in negated_spans))
        hedged.append(any(a <= m.first and m.last < b for a, b in hedged_spans))
    for c in alternatives:
        before = [k for k, m in enumerate(mentions) if c - 3 <= m.last < c]
        after = [k for k, m in enumerate(mentions) if c < m.first <= c + 3]
        if before and after:
            hedged[before[-1]] = hedged[after[0]] = True
    return negated, hedged


def _index_cues() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Cues by first word, in priority order: pseudo-cues, post-cues, pre-cues; longer cues first."""
    index: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for kind, cues in (("pseudo", _PSEUDO), ("neg_post", _POST_NEGATION), ("hedge_post", _POST_HEDGE),
                       ("neg_pre", _PRE_NEGATION), ("hedge_pre", _PRE_HEDGE)):
        for cue in cues:
            index.setdefault(cue[0], []).append((kind, cue))
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[1]))  # stable: among equal lengths the priority order stays
    return index


_CUES_BY_FIRST_WORD = _index_cues()


def rule_relevance(tokens: Sequence[Token], mentions: Sequence[Mention], target: str | int = BOOKMARK) \
        -> list[str]:
    """Relevance of each mention to one lesion of the sentence (see :func:`rule_details`)."""
    return rule_details(tokens, mentions, target).labels


@dataclass(frozen=True)
class RuleDetails:
    """The rules' decision per mention and what it rests on.

    ``ambiguous`` marks mentions whose lesion the rules chose by a small margin (the nearest target group and
    the nearest other group within ``AMBIGUOUS_MARGIN`` of each other; a tie is the closest call); ``cue_label`` is the label the cues alone give (relevant, uncertain, irrelevant)
    if the mention does describe the target lesion.
    """

    labels: list[str]
    cue_labels: list[str]
    ambiguous: list[bool]


AMBIGUOUS_MARGIN = 3.0


def rule_details(tokens: Sequence[Token], mentions: Sequence[Mention], target: str | int = BOOKMARK) \
        -> RuleDetails:
    """Relevance of each mention to one lesion of the sentence.

    Args:
        tokens: the sentence's tokens.
        mentions: its mentions (:class:`.matcher.Matcher`).
        target: the lesion: ``"BOOKMARK"`` (every BOOKMARK token of the sentence) or the token index of one
            bookmark. A sentence without bookmarks describes one lesion, whatever ``target`` says.

    Returns:
        One of :data:`RELEVANT`, :data:`UNCERTAIN`, :data:`IRRELEVANT` per mention.
    """
    groups = bookmark_groups(tokens)
    if groups:
        if isinstance(target, str):
            wanted = {g for g, group in enumerate(groups) if any(tokens[k].text == target for k in group)}
        else:
            wanted = {g for g, group in enumerate(groups) if target in group}
        owners, scores = _owners_and_scores(tokens, mentions, groups)
        owned = [bool(o & wanted) for o in owners]
        ambiguous = []
        for sc in scores:
            if sc is None or len(wanted) in (0, len(groups)):
                ambiguous.append(False)
                continue
            mine = min(sc[g] for g in wanted)
            others = min(sc[g] for g in range(len(groups)) if g not in wanted)
            ambiguous.append(abs(mine - others) < AMBIGUOUS_MARGIN)
    else:
        owned, ambiguous = [True] * len(mentions), [False] * len(mentions)
    negated, hedged = cue_scopes(tokens, mentions)
    cue = [IRRELEVANT if neg else UNCERTAIN if hedge else RELEVANT for neg, hedge in zip(negated, hedged, strict=True)]
    labels = [c if own else IRRELEVANT for c, own in zip(cue, owned, strict=True)]
    return RuleDetails(labels, cue, ambiguous)
