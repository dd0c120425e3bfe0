"""Scores on the radiologists' hand-labeled descriptions, the recall ceiling, and throughput."""

from __future__ import annotations

import json

import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.textmine.evaluate import (
    evaluate_hand_labeled,
    format_report,
    read_hand_labeled,
    recoverable_labels,
)


@pytest.fixture(scope="module")
def official():
    from conftest import shared_file

    from LesaNetCore.ontology import read_label_split, read_official_ontology

    onto = read_official_ontology(shared_file("lesanet/lesion_ontology_181022.xlsx"))
    term_list = read_label_split(shared_file("lesanet/text_mined_labels_171_and_split.json")).term_list
    return onto, term_list


@pytest.mark.shared_data
def test_hand_labeled_dev_reaches_the_targets(official):
    from conftest import shared_file

    onto, term_list = official
    result = evaluate_hand_labeled(shared_file("lesanet/hand_labeled_dev.json"), onto, term_list)
    micro = result["micro"]
    assert result["lesions"] == 250
    assert micro["precision"] >= 0.96 and micro["f1"] >= 0.93
    assert micro["recall"] <= result["recall_ceiling"] < 1.0
    assert set(result["per_label"]) <= set(term_list)
    assert "micro precision" in format_report(result)


@pytest.mark.shared_data
def test_recoverable_labels(official):
    onto, _ = official
    assert recoverable_labels("right lower lobe nodule", onto, ["lung", "nodule", "liver"]) == {"lung", "nodule"}


def test_read_hand_labeled_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"text": "x"}]))
    with pytest.raises(LesaNetError, match="expanded_terms"):
        read_hand_labeled(bad)
    with pytest.raises(LesaNetError, match="readable JSON"):
        read_hand_labeled(tmp_path / "missing.json")
