"""Synonym matching: longest match first, offsets, case, plural / adjectival / hyphenated forms, nesting."""

from __future__ import annotations

import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.ontology import Ontology, Term
from LesaNetCore.textmine.matcher import Matcher


def _term(name, cls, synonyms=(), parents=(), exclusive=()):
    return Term(name, cls, tuple(dict.fromkeys((name, *synonyms))), frozenset(parents), frozenset(exclusive))


@pytest.fixture(scope="module")
def matcher():
    terms = [
        _term("chest", "bodypart", ("thoracic",)),
        _term("lung", "bodypart", ("pulmonary",), ["chest"]),
        _term("right lung", "bodypart", (), ["lung"]),
        _term("right lower lobe", "bodypart", ("rll",), ["right lung"]),
        _term("right mid lung", "bodypart", ("right middle lobe", "middle lobe"), ["right lung"]),
        _term("abdomen", "bodypart"),
        _term("liver", "bodypart", ("hepatic",), ["abdomen"]),
        _term("kidney", "bodypart", ("renal",), ["abdomen"]),
        _term("left kidney", "bodypart", ("left renal",), ["kidney"]),
        _term("lymph node", "bodypart", ("node",)),
        _term("iliac lymph node", "bodypart", (), ["lymph node"]),
        _term("common iliac lymph node", "bodypart", (), ["lymph node"]),
        _term("paraaortic", "bodypart"),
        _term("nodule", "type"),
        _term("lung nodule", "type", ("pulmonary nodule",), ["lung", "nodule"]),
        _term("mass", "type"),
        _term("metastasis", "type", ("metastatic",)),
        _term("enlargement", "type", ("enlarged",)),
        _term("lymphadenopathy", "type", ("adenopathy",), ["lymph node", "enlargement"]),
        _term("wedge-shaped", "attribute"),
        _term("calcified", "attribute", ("calcification",), exclusive=["noncalcified"]),
        _term("noncalcified", "attribute", ("not calcified", "non-calcified"), exclusive=["calcified"]),
        _term("heterogeneous", "attribute"),
    ]
    return Matcher(Ontology(terms, name="toy"))


def _terms(matcher, text):
    return [m.term for m in matcher.find(text)]


def test_longest_match_wins_and_offsets_index_the_text(matcher):
    text = "Nodule in the Right Middle Lobe; RLL mass"
    mentions = matcher.find(text)
    assert [m.term for m in mentions] == ["nodule", "right mid lung", "right lower lobe", "mass"]
    for m in mentions:
        assert text[m.start:m.end] == m.surface
    assert mentions[1].surface == "Right Middle Lobe" and (mentions[1].first, mentions[1].last) == (3, 5)


@pytest.mark.parametrize(("text", "term"), [
    ("hepatic lesion", "liver"), ("renal cyst", "kidney"), ("pulmonary nodules", "lung nodule"),
    ("multiple nodules", "nodule"), ("hepatic metastases", "metastasis"), ("LYMPHADENOPATHY", "lymphadenopathy"),
    ("wedge-shaped opacity", "wedge-shaped"), ("wedge shaped opacity", "wedge-shaped"),
    ("para-aortic node", "paraaortic"), ("heterogeneously enhancing", "heterogeneous"),
])
def test_plural_adjectival_and_hyphenated_forms(matcher, text, term):
    assert term in _terms(matcher, text)


def test_nested_head_terms_are_reported(matcher):
    # the longest match is "common iliac lymph node"; its head "iliac lymph node" is not implied by it
    assert _terms(matcher, "common iliac lymph node") == ["common iliac lymph node", "iliac lymph node"]
    # ...but a term inside that contradicts the outer one is not: "not calcified" holds no "calcified"
    assert _terms(matcher, "not calcified nodule") == ["noncalcified", "nodule"]


def test_laterality_reaches_over_modifiers_to_a_body_part(matcher):
    found = matcher.find("Left anterior renal mass")
    assert "left kidney" in [m.term for m in found]
    lateral = next(m for m in found if m.term == "left kidney")
    assert lateral.surface == "Left anterior renal"
    assert "left kidney" not in _terms(matcher, "left lung and renal mass")


def test_empty_ontology_is_rejected():
    with pytest.raises(LesaNetError, match="at least one term"):
        Matcher(Ontology([], name="empty"))


def test_official_ontology_forms():
    from conftest import shared_file

    from LesaNetCore.ontology import read_official_ontology

    matcher = Matcher(read_official_ontology(shared_file("lesanet/lesion_ontology_181022.xlsx")))
    assert _terms(matcher, "right middle lobe") == ["right mid lung"]
    assert set(_terms(matcher, "Left lower lobe juxtapleural wedge-shaped opacity")) >= {
        "left lower lobe", "wedge-shaped", "opacity"}
    assert "lymphadenopathy" in _terms(matcher, "mesenteric lymphadenopathies")
