"""lesanet prepare: mined labels in the official split layout, label selection, truth set, patch cache."""

from __future__ import annotations

import json

import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging import read_dl_info
from LesaNetCore.ontology import Ontology, Term, load_default_ontology, read_label_split, read_ontology_json
from LesaNetCore.pipeline.prepare import prepare, read_sentences, select_labels
from LesaNetCore.training import open_patch_cache


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from LesaNetCore.phantom import synthesize

    return synthesize(tmp_path_factory.mktemp("phantom"), 40, seed=3, n_volumes=0, progress=False).out_dir


@pytest.fixture(scope="module")
def prepared(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    # "rules" skips loading the relevance CNN: the test is about the pipeline, not the miner.
    summary = prepare(phantom, out, min_positives=2, method="rules", progress=False)
    return out, summary


@pytest.mark.slow  # mines with the lemmatizer: loading WordNet takes 3-10 s once per process
def test_prepare_writes_the_official_split_layout(phantom, prepared):
    out, summary = prepared
    split = read_label_split(out / "labels.json")
    assert split.term_list == summary.term_list
    assert set(split.splits) == {"train", "val", "test"}
    codes = {r.lesion_idx: r.train_val_test for r in read_dl_info(phantom / "DL_info.csv")}
    for name, code in (("train", 1), ("val", 2), ("test", 3)):
        assert split.splits[name].lesion_idxs, name
        assert all(codes[i] == code for i in split.splits[name].lesion_idxs)
    assert sum(len(s.lesion_idxs) for s in split.splits.values()) == len(codes)


@pytest.mark.slow
def test_labels_have_enough_training_positives_and_include_parents(prepared):
    out, summary = prepared
    split = read_label_split(out / "labels.json")
    train = split.splits["train"]
    counts = [0] * len(split.term_list)
    for rel, unc in zip(train.relevant, train.uncertain, strict=True):
        for i in set(rel) | set(unc):
            counts[i] += 1
    assert min(counts) >= 2
    onto = load_default_ontology()
    for rel in train.relevant:
        names = {split.term_list[i] for i in rel}
        for name in names:  # relevant lists hold the ancestors that are labels, as the official file does
            assert (onto.ancestors(name) & set(split.term_list)) <= names


@pytest.mark.slow
def test_label_ontology_mined_lines_and_cache_agree(phantom, prepared):
    out, summary = prepared
    label_ontology = read_ontology_json(out / "label_ontology.json")
    assert list(label_ontology.names) == list(summary.term_list)
    mined = [json.loads(line) for line in (out / "mined.jsonl").read_text().splitlines()]
    sentences = read_sentences(phantom / "sentences.jsonl")
    assert len(mined) == len(sentences)
    assert all(m["text"] == sentences[m["id"]] and m["split"] in ("train", "val", "test") for m in mined)
    cache = open_patch_cache(out / "cache")
    assert cache.label_names == list(summary.term_list)
    assert sum(summary.cache["counts"].values()) == len(cache.arrays["split"])
    # `lesanet train --data DATA_DIR` takes the prepare folder itself as well as its cache.
    assert open_patch_cache(out).label_names == cache.label_names


@pytest.mark.slow
def test_truth_holds_expanded_true_labels_of_test_lesions(phantom, prepared):
    out, summary = prepared
    truth = json.loads((out / "truth.json").read_text())
    test_ids = set(read_label_split(out / "labels.json").splits["test"].lesion_idxs)
    assert truth and {t["lesion_idx"] for t in truth} == test_ids
    onto = load_default_ontology()
    labels = set(summary.term_list)
    for entry in truth:
        names = set(entry["expanded_terms"])
        assert names <= labels
        for name in names:
            assert (onto.ancestors(name) & labels) <= names


@pytest.mark.slow
def test_prepare_refuses_to_overwrite(phantom, prepared):
    out, _ = prepared
    with pytest.raises(LesaNetError, match="--overwrite"):
        prepare(phantom, out, min_positives=2, method="rules", progress=False)


@pytest.mark.slow
def test_prepare_with_a_split_file_uses_its_term_list(phantom, tmp_path):
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"term_list": ["liver", "lung", "kidney"], "train_lesion_idxs": []}))
    out = tmp_path / "data"
    summary = prepare(phantom, out, labels=split_file, method="rules", progress=False)
    assert summary.term_list == ("liver", "lung", "kidney")
    assert read_label_split(out / "labels.json").term_list == ("liver", "lung", "kidney")


@pytest.mark.slow
def test_too_high_min_positives_is_an_error_naming_it(phantom, tmp_path):
    with pytest.raises(LesaNetError, match="--min-positives"):
        prepare(phantom, tmp_path / "data", min_positives=10_000, method="rules", progress=False)


def test_missing_dl_info_is_an_error(tmp_path):
    with pytest.raises(LesaNetError, match="DL_ROOT"):
        prepare(tmp_path, tmp_path / "out", progress=False)


def test_select_labels_counts_training_lesions_only():
    onto = Ontology([Term("chest", "bodypart"), Term("lung", "bodypart", parents=frozenset({"chest"})),
                     Term("nodule", "type")])
    expanded = {0: ["chest", "lung"], 1: ["chest"], 2: ["nodule"], 3: ["nodule"]}
    split_of = {0: "train", 1: "train", 2: "train", 3: "test"}
    chosen, counts = select_labels(expanded, split_of, onto, 2)
    assert chosen == ["chest"]
    assert counts == {"chest": 2, "lung": 1, "nodule": 1}
    with pytest.raises(LesaNetError, match="--min-positives"):
        select_labels(expanded, split_of, onto, 0)


def test_read_sentences_names_the_bad_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": 0, "text": "a"}\n\n{"text": "no id"}\n')
    with pytest.raises(LesaNetError, match=r"s.jsonl line 3: must be a JSON object with an integer 'id'"):
        read_sentences(path)
    path.write_text('{"id": 0, "text": "a"}\nnot json\n')
    with pytest.raises(LesaNetError, match="line 2: .* but got 'not json'"):
        read_sentences(path)
    path.write_text('{"id": 0, "text": 5}\n')
    with pytest.raises(LesaNetError, match="line 1 'text'"):
        read_sentences(path)


def test_cli_refuses_labels_with_min_positives(tmp_path, capsys):
    from LesaNetCore.cli import main

    code = main(["prepare", str(tmp_path), "--out", str(tmp_path / "o"), "--labels", "x.json",
                 "--min-positives", "3"])
    assert code == 2
    assert "--min-positives" in capsys.readouterr().err
