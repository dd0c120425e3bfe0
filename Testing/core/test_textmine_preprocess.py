"""Tokens, offsets and normal forms; the fast tokenizer path agrees with NLTK; lemmas agree with(out) WordNet."""

from __future__ import annotations

import random

import pytest

from LesaNetCore.textmine import preprocess
from LesaNetCore.textmine.preprocess import Lemmatizer, normalize_word, plural_rule, tokenize


def test_offsets_point_into_the_original_text():
    text = "Large nodule BOOKMARK in the right middle lobe, (3.2 cm); no change."
    tokens = tokenize(text)
    assert all(text[t.start:t.end] == t.text for t in tokens)
    assert [t.text for t in tokens][:3] == ["Large", "nodule", "BOOKMARK"]
    assert tokens[2].is_bookmark and not tokens[1].is_bookmark


@pytest.mark.parametrize(("word", "norm"), [
    ("nodules", "nodule"), ("metastases", "metastasis"), ("Lymphadenopathies", "lymphadenopathy"),
    ("hepatic", "liver"), ("renal", "kidney"), ("pulmonary", "lung"), ("heterogeneously", "heterogeneous"),
    ("hypodensities", "hypodensity"), ("was", "was"), ("as", "as"),
])
def test_normal_forms(word, norm):
    assert normalize_word(word) == norm


def test_hyphenated_word_splits_and_keeps_its_joined_form():
    tokens = tokenize("para-aortic wedge-shaped")
    assert [t.text for t in tokens] == ["para", "aortic", "wedge", "shaped"]
    assert tokens[0].joined == ("paraaortic", 2) and tokens[2].joined == ("wedgeshaped", 2)
    assert (tokens[1].start, tokens[1].end) == (5, 11)


def test_internal_full_stop_is_split_but_not_decimals_or_abbreviations():
    words = [t.text for t in tokenize("Liver lesion. Size 3.2 cm vs. cyst.")]
    assert words == ["Liver", "lesion", ".", "Size", "3.2", "cm", "vs.", "cyst", "."]


def test_fast_tokenizer_path_matches_nltk_on_random_strings():
    from nltk.tokenize import NLTKWordTokenizer

    tokenize("x")  # builds the module's NLTK tokenizer
    reference = NLTKWordTokenizer()
    rng = random.Random(0)
    alphabet = "abAB09 ,.;:()[]/_+-"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        assert preprocess._nltk_spans(text) == list(reference.span_tokenize(text)), text


def test_plural_rule_is_deterministic():
    assert plural_rule("opacities") == "opacity"
    assert plural_rule("nodules") == "nodule"
    assert plural_rule("mass") == "mass" and plural_rule("fibrous") == "fibrous" and plural_rule("ascites") == "ascite"


def test_lemmas_of_the_ontology_do_not_depend_on_wordnet():
    """The shipped table makes every ontology word (and its common plurals) lemmatise identically without
    WordNet, so matching gives the same result on a machine where WordNet is missing."""
    from LesaNetCore.ontology import load_default_ontology

    onto = load_default_ontology()
    without = Lemmatizer(use_wordnet=False)
    with_wordnet = Lemmatizer(use_wordnet=True)
    words = {w for n in onto.names for s in onto.term(n).synonyms for w in s.replace("-", " ").split() if w.isalpha()}
    words |= {w + "s" for w in words}
    if with_wordnet._wordnet_morphy() is None:
        pytest.skip("WordNet not installed here (run `lesanet nltk-data`)")
    differing = sorted(w for w in words if without(w) != with_wordnet(w))
    assert differing == []
