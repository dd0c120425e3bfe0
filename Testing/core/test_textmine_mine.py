"""The miner end to end: the paper's Fig. 1 sentence, negation and hedging, inference, the split layout."""

from __future__ import annotations

import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.textmine.mine import MinedLabels, TextMiner, infer_terms, split_sentences, to_split_layout

FIG1 = ("There is a large nodule BOOKMARK in the right middle lobe, and a smaller nodule in the right lower lobe "
        "OTHER_BMK.")


@pytest.fixture(scope="module")
def official():
    from conftest import shared_file

    from LesaNetCore.ontology import read_official_ontology

    return read_official_ontology(shared_file("lesanet/lesion_ontology_181022.xlsx"))


@pytest.fixture(scope="module")
def miner():
    return TextMiner()  # the project's default ontology


def test_figure_1_with_the_official_ontology(official):
    result = TextMiner(official).mine(FIG1, id=3)
    assert {"nodule", "large", "right mid lung"} <= set(result.relevant)
    assert "right lower lobe" in result.irrelevant and "right lower lobe" not in result.expanded
    assert {"lung", "right lung", "chest"} <= set(result.expanded)
    assert result.to_dict()["id"] == 3


def test_figure_1_with_the_default_ontology(miner):
    result = miner.mine(FIG1)
    assert {"nodule", "large", "right mid lung"} <= set(result.relevant)
    assert "right lower lobe" in result.irrelevant


def test_mentions_carry_offsets_into_the_whole_text(miner):
    text = "The liver is normal. Large renal cyst BOOKMARK."
    for m in miner.mine(text).mentions:
        assert text[m.start:m.end] == m.surface


def test_negated_mentions_are_never_relevant(miner):
    result = miner.mine("Hypodense liver lesion BOOKMARK without calcification. No lymphadenopathy.")
    assert "calcified" not in result.relevant and "calcified" not in result.expanded
    assert "calcified" in result.irrelevant
    assert "liver" in result.relevant


def test_hedged_mentions_are_uncertain_and_expanded(miner):
    result = miner.mine("Hypodense liver lesion BOOKMARK, likely a cyst.")
    assert "cyst" in result.uncertain and "cyst" not in result.relevant
    assert "cyst" in result.expanded


def test_composite_is_inferred_from_body_part_and_type(miner):
    result = miner.mine("Calcified mass BOOKMARK in the liver")
    assert "liver mass" in result.relevant and "liver mass" in result.expanded


def test_infer_terms_rules(official):
    assert infer_terms(official, {"liver", "mass"}) == {"liver mass"}
    assert "kidney cyst" in infer_terms(official, {"right kidney", "cyst"})
    # a parent reached only through a deeper term does not make the lexicalised composite
    assert "lung nodule" not in infer_terms(official, {"right lower lobe", "nodule"})
    # one term's own ancestry does not infer a sibling organ
    assert "adrenal gland" not in infer_terms(official, {"left kidney"})


def test_labels_restrict_every_list(official):
    labels = ["lung", "nodule", "chest"]
    result = TextMiner(official, labels=labels).mine(FIG1)
    assert set(result.expanded) == {"lung", "nodule", "chest"}
    assert set(result.relevant) <= set(labels) and result.irrelevant == ()


def test_bad_arguments_are_named(miner):
    with pytest.raises(LesaNetError, match="method"):
        TextMiner(method="magic")
    with pytest.raises(LesaNetError, match="labels"):
        TextMiner(labels=["no such term"])
    with pytest.raises(LesaNetError, match="text"):
        miner.mine(None)


def test_split_sentences():
    text = "Liver lesion BOOKMARK measures 3.2 cm. No change.\nKidney normal"
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "Liver lesion BOOKMARK measures 3.2 cm.", "No change.", "Kidney normal"]


def test_split_layout_matches_the_official_file():
    results = [MinedLabels(11, ("lung nodule",), ("mass",), ("liver",), ()), MinedLabels(12, (), (), (), ())]
    term_list = ["chest", "lung", "nodule", "lung nodule", "mass", "liver"]

    class Onto:  # the two methods to_split_layout uses
        def expand(self, names):
            parents = {"lung nodule": {"lung", "nodule"}, "lung": {"chest"}}
            out, todo = set(), list(names)
            while todo:
                name = todo.pop()
                if name not in out:
                    out.add(name)
                    todo.extend(parents.get(name, ()))
            return frozenset(out)

    layout = to_split_layout(results, term_list, "train_", ontology=Onto())
    assert layout["train_lesion_idxs"] == [11, 12]
    assert layout["train_relevant_labels"] == [[0, 1, 2, 3], []]
    assert layout["train_uncertain_labels"] == [[4], []]
    assert layout["train_irrelevant_labels"] == [[5], []]
    with pytest.raises(LesaNetError, match="repeat"):
        to_split_layout(results, ["lung", "lung"])
