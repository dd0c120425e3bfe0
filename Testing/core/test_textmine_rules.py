"""Each relevance rule: bookmark scope, clause scope, negation, pseudo-negation, hedging, alternatives."""

from __future__ import annotations

import pytest

from LesaNetCore.textmine.matcher import Mention
from LesaNetCore.textmine.preprocess import tokenize
from LesaNetCore.textmine.relevance_rules import (
    IRRELEVANT,
    RELEVANT,
    UNCERTAIN,
    bookmark_groups,
    rule_details,
    rule_relevance,
)

VOCAB = ("right middle lobe", "right lower lobe", "liver lesion", "lymph nodes", "lymph node", "nodule", "mass",
         "cyst", "calcification", "metastasis", "hemangioma", "liver", "large", "hilar", "mediastinal",
         "effusion", "adenopathy", "lesion", "kidney")


def _judge(text, target="BOOKMARK"):
    """Mentions are the VOCAB words (longest first), so these tests exercise the rules alone."""
    tokens = tokenize(text)
    words = [t.lower for t in tokens]
    mentions, i = [], 0
    while i < len(tokens):
        for phrase in VOCAB:
            parts = phrase.split()
            if words[i:i + len(parts)] == parts:
                j = i + len(parts) - 1
                mentions.append(Mention(phrase, tokens[i].start, tokens[j].end, i, j, text[tokens[i].start:tokens[j].end]))
                i = j + 1
                break
        else:
            i += 1
    return {m.surface.lower(): label for m, label in zip(mentions, rule_relevance(tokens, mentions, target), strict=True)}


def test_figure_1_sentence():
    got = _judge("There is a large nodule BOOKMARK in the right middle lobe, and a smaller nodule in the "
                 "right lower lobe OTHER_BMK.")
    assert got["large"] == RELEVANT and got["right middle lobe"] == RELEVANT
    assert got["right lower lobe"] == IRRELEVANT


def test_nearest_bookmark_owns_the_mention():
    got = _judge("Mediastinal lymph nodes BOOKMARK and hilar lymph node OTHER_BMK.")
    assert got == {"mediastinal": RELEVANT, "lymph nodes": RELEVANT, "hilar": IRRELEVANT, "lymph node": IRRELEVANT}
    other = _judge("Mediastinal lymph nodes BOOKMARK and hilar lymph node OTHER_BMK.", target="OTHER_BMK")
    assert other["hilar"] == RELEVANT and other["mediastinal"] == IRRELEVANT


def test_grouped_bookmarks_share_a_description():
    tokens = tokenize("Enlarged lymph nodes BOOKMARK, OTHER_BMK and OTHER_BMK.")
    assert bookmark_groups(tokens) == [[3, 5, 7]]
    assert _judge("Enlarged lymph nodes BOOKMARK, OTHER_BMK.") == {"lymph nodes": RELEVANT}


def test_sentence_without_a_bookmark_is_about_no_bookmarked_lesion():
    got = _judge("The liver is normal. Large kidney lesion BOOKMARK.")
    assert got["liver"] == IRRELEVANT and got["kidney"] == RELEVANT


def test_text_without_bookmarks_describes_one_lesion():
    assert _judge("Large liver lesion") == {"large": RELEVANT, "liver lesion": RELEVANT}


@pytest.mark.parametrize("text", [
    "No adenopathy. Nodule BOOKMARK.", "Nodule BOOKMARK without calcification.",
    "Nodule BOOKMARK, negative for metastasis.", "Nodule BOOKMARK; the previously seen mass has resolved.",
    "Nodule BOOKMARK. Resolved effusion.",
])
def test_negated_mentions_are_irrelevant(text):
    got = _judge(text)
    assert got.pop("nodule") == RELEVANT
    assert set(got.values()) == {IRRELEVANT}


def test_negation_scope_stops_at_the_clause():
    got = _judge("Liver lesion BOOKMARK without calcification, likely cyst.")
    assert got == {"liver lesion": RELEVANT, "calcification": IRRELEVANT, "cyst": UNCERTAIN}


def test_pseudo_negation_negates_nothing():
    assert _judge("No change in the liver lesion BOOKMARK.") == {"liver lesion": RELEVANT}
    assert _judge("Liver lesion BOOKMARK, not significantly changed.") == {"liver lesion": RELEVANT}


@pytest.mark.parametrize(("text", "hedged"), [
    ("Liver lesion BOOKMARK, likely a cyst.", "cyst"), ("Liver lesion BOOKMARK, possibly metastasis.", "metastasis"),
    ("Liver lesion BOOKMARK suspicious for metastasis.", "metastasis"),
    ("Liver lesion BOOKMARK may represent hemangioma.", "hemangioma"),
    ("Liver lesion BOOKMARK, metastasis cannot be excluded.", "metastasis"),
])
def test_hedged_mentions_are_uncertain(text, hedged):
    got = _judge(text)
    assert got["liver lesion"] == RELEVANT and got[hedged] == UNCERTAIN


@pytest.mark.parametrize("cue", ["or", "versus"])
def test_alternatives_are_uncertain_on_both_sides(cue):
    got = _judge(f"Liver lesion BOOKMARK, cyst {cue} hemangioma.")
    assert got == {"liver lesion": RELEVANT, "cyst": UNCERTAIN, "hemangioma": UNCERTAIN}


def test_details_flag_close_calls_as_ambiguous():
    text = "Nodule BOOKMARK; mass OTHER_BMK cyst OTHER_BMK; lesion BOOKMARK liver OTHER_BMK"
    tokens = tokenize(text)
    mentions = [Mention(w, text.index(w), text.index(w) + len(w), k, k, w) for w, k in
                (("Nodule", 0), ("mass", 3), ("cyst", 5), ("lesion", 8), ("liver", 10))]
    details = rule_details(tokens, mentions)
    # in the last clause BOOKMARK and OTHER_BMK are one word apart: both mentions there are close calls;
    # the first clauses hold one kind of bookmark each, so nothing there is ambiguous
    assert details.ambiguous == [False, False, False, True, True]
    assert details.labels == [RELEVANT, IRRELEVANT, IRRELEVANT, RELEVANT, RELEVANT]
