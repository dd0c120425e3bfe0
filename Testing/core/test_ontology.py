"""Ontology: hierarchy, exclusivity, expansion, subsets, decisions, readers and their errors."""

from __future__ import annotations

import json

import pytest
from conftest import shared_file

from LesaNetCore.cli import main
from LesaNetCore.errors import LesaNetError
from LesaNetCore.ontology import (
    Ontology,
    Term,
    decide,
    load_default_ontology,
    read_label_split,
    read_official_ontology,
    read_ontology_json,
)


def T(name, cls="bodypart", parents=(), exclusive=(), synonyms=()):  # noqa: N802 - a tiny term factory
    return Term(name, cls, tuple(synonyms), frozenset(parents), frozenset(exclusive))


@pytest.fixture
def small():
    """chest > lung > right lung > right lower lobe; abdomen > liver; chest and abdomen exclusive."""
    return Ontology([
        T("chest", exclusive=["abdomen"]), T("abdomen"),
        T("lung", parents=["chest"], synonyms=["pulmonary"]), T("right lung", parents=["lung"], exclusive=["left lung"]),
        T("left lung", parents=["lung"]), T("right lower lobe", parents=["right lung"]),
        T("liver", parents=["abdomen"], synonyms=["hepatic"]),
        T("nodule", "type"), T("lung nodule", "type", parents=["nodule", "lung"]),
    ])


def test_expand_adds_every_ancestor(small):
    assert small.expand(["right lower lobe"]) == {"right lower lobe", "right lung", "lung", "chest"}
    assert small.expand(["lung nodule"]) == {"lung nodule", "nodule", "lung", "chest"}


def test_exclusive_propagates_to_descendants_of_both_sides(small):
    assert "liver" in small.exclusive_with("right lower lobe")  # chest x abdomen -> descendants
    assert "left lung" in small.exclusive_with("right lower lobe")  # right lung x left lung -> descendants
    assert "lung nodule" in small.exclusive_with("liver")
    assert "nodule" not in small.exclusive_with("liver")  # not a descendant of chest
    assert small.reliable_negatives(["liver"]) == {"chest", "lung", "right lung", "left lung", "right lower lobe",
                                                   "lung nodule"}


def test_direct_parents_from_a_full_ancestor_list():
    onto = Ontology([T("chest"), T("lung", parents=["chest"]), T("right lung", parents=["lung", "chest"])])
    assert onto.parents("right lung") == {"lung"}
    assert onto.ancestors("right lung") == {"lung", "chest"}
    assert onto.children("chest") == {"lung"}


def test_subset_keeps_relations_through_dropped_terms(small):
    sub = small.subset(["chest", "right lower lobe", "liver", "left lung"])
    assert sub.parents("right lower lobe") == {"chest"}
    assert "liver" in sub.exclusive_with("right lower lobe")
    assert "left lung" in sub.exclusive_with("right lower lobe")
    assert sub.names == ("chest", "right lower lobe", "liver", "left lung")


def test_decide_keeps_higher_exclusive_and_turns_parents_on(small):
    scores = {"right lower lobe": 0.9, "left lung": 0.7, "liver": 0.6, "lung nodule": 0.8, "chest": 0.1}
    assert decide(small, scores, 0.5) == {"right lower lobe", "right lung", "lung", "chest", "lung nodule", "nodule"}
    # Per-label thresholds aligned with names.
    aligned = [scores.get(n, 0.0) for n in small.names]
    thresholds = [0.95 if n == "right lower lobe" else 0.5 for n in small.names]
    assert "left lung" in decide(small, aligned, thresholds)


def test_digest_changes_with_content(small):
    other = small.subset(small.names)
    assert other.digest() == small.digest()
    assert small.subset(small.names[:-1]).digest() != small.digest()


# ------------------------------------------------------------------------------------- validation errors
def test_unknown_parent_is_an_error():
    with pytest.raises(LesaNetError, match=r"parents of 'lung'.*unknown term 'thorax'"):
        Ontology([T("lung", parents=["thorax"])])


def test_unknown_exclusive_is_an_error():
    with pytest.raises(LesaNetError, match=r"exclusive of 'lung'.*unknown term 'liver'"):
        Ontology([T("lung", exclusive=["liver"])])


def test_cycle_is_an_error():
    with pytest.raises(LesaNetError, match=r"acyclic, but got the cycle a -> c -> b -> a"):
        Ontology([T("a", parents=["c"]), T("b", parents=["a"]), T("c", parents=["b"])])


def test_exclusive_with_own_ancestor_is_an_error():
    with pytest.raises(LesaNetError, match=r"exclusive of 'right lung'.*'chest' \(its ancestor\)"):
        Ontology([T("chest"), T("lung", parents=["chest"]), T("right lung", parents=["lung"], exclusive=["chest"])])


def test_synonym_claimed_by_two_terms_is_an_error():
    with pytest.raises(LesaNetError, match=r"synonyms of 'neoplasm'.*'tumor', already a synonym of 'mass'"):
        Ontology([T("mass", "type", synonyms=["tumor"]), T("neoplasm", "type", synonyms=["tumor"])])


def test_unknown_class_is_an_error():
    with pytest.raises(LesaNetError, match=r"class of 'lung'.*'organ'"):
        Ontology([T("lung", cls="organ")])


def test_duplicate_term_is_an_error():
    with pytest.raises(LesaNetError, match=r"unique.*'lung' twice"):
        Ontology([T("lung"), T("lung")])


def test_json_malformed_field_names_file_term_and_value(tmp_path):
    path = tmp_path / "onto.json"
    path.write_text(json.dumps({"format": "lesanet-ontology", "version": 1, "terms": [
        {"name": "lung", "class": "bodypart", "parents": "chest"}]}))
    with pytest.raises(LesaNetError, match=r"onto.json term #1 \('lung'\) field 'parents'.*'chest'"):
        read_ontology_json(path)


def test_json_bad_radlex_code(tmp_path):
    path = tmp_path / "onto.json"
    path.write_text(json.dumps({"format": "lesanet-ontology", "version": 1, "terms": [
        {"name": "lung", "class": "bodypart", "radlex": "1301"}]}))
    with pytest.raises(LesaNetError, match=r"field 'radlex'.*'1301'"):
        read_ontology_json(path)


def test_xlsx_malformed_rows_name_file_row_column_value(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    header = ["id", "class", "term", "synonyms", "num_detected", "term_exclusive", "term_parents", "term_children"]
    for bad_row, message in (
        ([1, "organ", "lung", "lung", 0, None, None, None], r"bad.xlsx row 2 column 'class'.*'organ'"),
        ([1, "bodypart", None, "lung", 0, None, None, None], r"bad.xlsx row 2 column 'term'.*None"),
    ):
        book = openpyxl.Workbook()
        book.active.append(header)
        book.active.append(bad_row)
        path = tmp_path / "bad.xlsx"
        book.save(path)
        with pytest.raises(LesaNetError, match=message):
            read_official_ontology(path)
    book = openpyxl.Workbook()
    book.active.append(header[:-1])
    book.save(path)
    with pytest.raises(LesaNetError, match=r"bad.xlsx row 1.*'term_children' is missing"):
        read_official_ontology(path)


# ------------------------------------------------------------------------------------------ shipped data
def test_default_ontology_is_valid_and_coded():
    onto = load_default_ontology()
    assert len(onto) >= 171
    assert onto.expand(["right mid lung"]) == {"right mid lung", "right lung", "lung", "chest"}
    assert onto.term("liver").radlex == "RID58"
    assert sum(t.radlex is not None for t in onto) / len(onto) > 0.85
    assert onto.synonym_index()["hepatic"] == "liver"
    assert "left lung" in onto.exclusive_with("right lower lobe")
    assert "hyperattenuation" in onto.exclusive_with("hypoattenuation")
    # the paper's figure vocabulary
    for term in ("lung nodule", "liver mass", "lymphadenopathy", "ground-glass opacity", "kidney cyst",
                 "metastasis", "spiculated", "calcified", "cavitary", "lobular", "heterogeneous", "enhancing"):
        assert term in onto


# ------------------------------------------------------------------------------------------ official data
@pytest.fixture(scope="module")
def official():
    return read_official_ontology(shared_file("lesanet/lesion_ontology_181022.xlsx"))


@pytest.fixture(scope="module")
def official_171(official):
    split = read_label_split(shared_file("lesanet/text_mined_labels_171_and_split.json"))
    return official.subset(split.term_list)


@pytest.mark.shared_data
def test_official_171_counts_match_the_paper(official_171):
    stats = official_171.stats()
    assert stats["terms"] == 171
    assert stats["classes"] == {"bodypart": 115, "type": 27, "attribute": 29}
    assert stats["parent_child_pairs"] == 137
    assert abs(stats["exclusive_pairs"] - 4461) <= 0.01 * 4461


@pytest.mark.shared_data
def test_official_right_mid_lung_expands_as_in_the_paper(official):
    assert official.expand(["right mid lung"]) == {"right mid lung", "right lung", "lung", "chest"}


@pytest.mark.shared_data
def test_official_workbook_repairs_are_reported(official):
    assert len(official) == 333
    assert any("gastrointestinal" in w for w in official.warnings)
    assert "superior mediastinum lymph node" not in official.exclusive_with("pretracheal lymph node")


@pytest.mark.shared_data
def test_label_split_reads_all_splits():
    split = read_label_split(shared_file("lesanet/text_mined_labels_171_and_split.json"))
    assert len(split.term_list) == 171
    assert {k: len(v.lesion_idxs) for k, v in split.splits.items()} == {"train": 20266, "val": 1976, "test": 1879}
    assert split.splits["val"].irrelevant[0] == ()


def test_label_split_rejects_out_of_range_index(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"term_list": ["a", "b"], "train_lesion_idxs": [0], "train_relevant_labels": [[2]]}))
    with pytest.raises(LesaNetError, match=r"train_relevant_labels'\[0\].*0..1.*2"):
        read_label_split(path)


# ------------------------------------------------------------------------------------------------- CLI
def test_stats_cli_default_json(capsys):
    assert main(["ontology", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) == {"terms", "classes", "parent_child_pairs", "ancestor_pairs", "exclusive_pairs"}
    assert stats["terms"] == len(load_default_ontology())


@pytest.mark.shared_data
def test_stats_cli_official_171(capsys):
    args = ["ontology", "stats", "--xlsx", str(shared_file("lesanet/lesion_ontology_181022.xlsx")),
            "--labels", str(shared_file("lesanet/text_mined_labels_171_and_split.json")), "--json"]
    assert main(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["parent_child_pairs"] == 137 and stats["terms"] == 171


def test_stats_cli_missing_file_is_a_clear_error(capsys):
    assert main(["ontology", "stats", "--xlsx", "no/such.xlsx"]) == 2
    assert "no/such.xlsx" in capsys.readouterr().err
