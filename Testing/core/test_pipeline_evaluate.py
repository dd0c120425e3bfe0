"""lesanet evaluate and lesanet index: report files, hand-labeled set, decisions, retrieval with patient exclusion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.ontology import Ontology, Term
from LesaNetCore.pipeline.evaluate import consistent_decisions, evaluate, headline, read_hand_labeled


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny prepared phantom set and a model trained on it for one epoch (quality is not the point)."""
    from LesaNetCore.phantom import synthesize
    from LesaNetCore.pipeline.prepare import prepare
    from LesaNetCore.training import TrainConfig, apply_overrides, train

    root = tmp_path_factory.mktemp("evaluate")
    phantom = synthesize(root / "phantom", 48, seed=5, n_volumes=1, progress=False).out_dir
    data = root / "data"
    prepare(phantom, data, min_positives=2, method="rules", progress=False)
    config = apply_overrides(TrainConfig(), ["arch=lesanet_demo", "epochs=1", "batch_size=16", "device=cpu",
                                             "workers=0", "amp=off", "channels_last=false",
                                             "loss.rhem_samples=200", "loss.triplet_count=50"])
    train(config, data / "cache", root / "run", progress=False)
    return {"root": root, "phantom": phantom, "data": data, "model": root / "run" / "last.pt"}


@pytest.mark.slow
def test_evaluate_writes_the_report_with_retrieval_and_truth(trained, tmp_path):
    out = tmp_path / "report"
    report = evaluate(trained["model"], trained["data"], out, hand_labeled=trained["data"] / "truth.json",
                      progress=False)
    for name in ("report.json", "report.md", "auc_f1_vs_frequency.png", "f1_by_class.png", "roc_curves.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "report.json").read_text())
    assert saved["retrieval"]["gallery"] == "train" and set(saved["retrieval"]["acg"]) == {"1", "5", "10"}
    truth = json.loads((trained["data"] / "truth.json").read_text())
    assert 0 < saved["hand_labeled"]["num_lesions"] <= len(truth)
    assert set(saved["threshold_grids"]) == {"reference", "fine", "midpoints"}
    allowed = {0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}
    assert all(round(t, 2) in allowed for t in report["thresholds"])
    markdown = (out / "report.md").read_text()
    assert "Hand-labeled / true labels" in markdown and "finer threshold search" in markdown
    row = headline(report)
    assert 0.0 <= row["auc"] <= 1.0 and row["acg@5"] >= 0.0 and "hand_f1" in row
    with pytest.raises(LesaNetError, match="overwrite"):
        evaluate(trained["model"], trained["data"], out, progress=False)


@pytest.mark.slow
def test_evaluate_refuses_a_model_with_other_labels(trained, tmp_path):
    from LesaNetCore.model import create_model
    from LesaNetCore.training import save_checkpoint

    path = save_checkpoint(tmp_path / "other.pt", create_model("lesanet_demo", num_labels=2), arch="lesanet_demo",
                           label_names=["liver", "lung"])
    with pytest.raises(LesaNetError, match="labels must be the data's labels"):
        evaluate(path, trained["data"], None, progress=False)


@pytest.mark.slow
def test_index_build_and_search_exclude_the_query_patient(trained, tmp_path, capsys):
    from LesaNetCore.cli import main
    from LesaNetCore.pipeline.index_build import build_reference_index, search_lesion
    from LesaNetCore.training import open_patch_cache

    index_dir = tmp_path / "index"
    index = build_reference_index(trained["model"], trained["data"], index_dir, progress=False)
    cache = open_patch_cache(trained["data"] / "cache")
    train_rows = cache.rows("train")
    assert len(index) == len(train_rows)
    mined = {json.loads(x)["id"]: json.loads(x)["text"] for x in (trained["data"] / "mined.jsonl").read_text().splitlines()}
    entry = index.entry(0)
    assert entry.thumbnail.shape == (64, 64) and entry.thumbnail.dtype == np.uint8
    assert entry.sentence == mined[int(entry.lesion_id)]
    assert set(entry.labels) <= set(cache.label_names) and entry.labels
    # A training lesion's nearest neighbour is itself (distance 0) unless its patient is excluded.
    lesion = int(cache.arrays["lesion_idx"][train_rows[0]])
    patient = str(int(cache.arrays["patient"][train_rows[0]]))
    similar, excluded = search_lesion(index_dir, lesion, trained["data"], k=5)
    assert excluded == patient
    assert similar and all(s.patient_id != patient for s in similar)
    assert str(lesion) not in {s.lesion_id for s in similar}
    assert index.search(index.embeddings[0], k=1)[0].lesion_id == entry.lesion_id
    # A test lesion is not in the index: it needs the model to be embedded.
    test_lesion = int(cache.arrays["lesion_idx"][cache.rows("test")[0]])
    with pytest.raises(LesaNetError, match="--model"):
        search_lesion(index_dir, test_lesion, trained["data"], k=3)
    code = main(["index", "search", "--index", str(index_dir), "--lesion", str(test_lesion), "--data",
                 str(trained["data"]), "--model", str(trained["model"]), "-k", "3"])
    printed = capsys.readouterr().out
    assert code == 0 and printed.count("distance") == 3


@pytest.mark.slow
def test_index_search_on_a_volume_box(trained, capsys, tmp_path):
    from LesaNetCore.cli import main

    index_dir = tmp_path / "index"
    assert main(["index", "build", "--model", str(trained["model"]), "--data", str(trained["data"]), "--out",
                 str(index_dir), "--quiet"]) == 0
    meta = next((trained["phantom"] / "volumes").glob("*.json"))
    info = json.loads(meta.read_text())
    box = ",".join(str(v) for v in info["lesions"][0]["box_ijk"])
    code = main(["index", "search", str(trained["phantom"] / "volumes" / info["volume"]), "--box-ijk", box,
                 "--index", str(index_dir), "--model", str(trained["model"]), "-k", "2"])
    assert code == 0 and capsys.readouterr().out.count("distance") == 2


def test_consistent_decisions_turn_parents_on_and_drop_the_weaker_exclusive():
    onto = Ontology([Term("chest", "bodypart"), Term("abdomen", "bodypart", exclusive=frozenset({"chest"})),
                     Term("lung", "bodypart", parents=frozenset({"chest"}))])
    scores = np.array([[0.1, 0.2, 0.9], [0.7, 0.8, 0.1]])
    decided = consistent_decisions(onto, scores, np.array([0.5, 0.5, 0.5]))
    assert decided.tolist() == [[True, False, True], [False, True, False]]


def test_read_hand_labeled_maps_synonyms_and_drops_other_terms(tmp_path):
    onto = Ontology([Term("porta hepatis", "bodypart", synonyms=("porta hepatis", "porta Hepatis")),
                     Term("liver", "bodypart")])
    path = tmp_path / "hand.json"
    path.write_text(json.dumps([{"lesion_idx": 7, "expanded_terms": ["porta Hepatis", "liver", "lung"], "text": ""}]))
    assert read_hand_labeled(path, ["porta hepatis", "liver"], onto) == {7: {"porta hepatis", "liver"}}
    path.write_text(json.dumps([{"expanded_terms": []}]))
    with pytest.raises(LesaNetError, match="lesion_idx"):
        read_hand_labeled(path, ["liver"], onto)


def test_evaluate_checks_its_arguments_first(tmp_path):
    with pytest.raises(LesaNetError, match="--split"):
        evaluate(tmp_path / "m.pt", tmp_path, None, split="train")
    with pytest.raises(LesaNetError, match="--batch-size"):
        evaluate(tmp_path / "m.pt", tmp_path, None, batch_size=0)


@pytest.mark.shared_data
def test_read_hand_labeled_reads_the_official_file_with_the_official_labels():
    from conftest import shared_file

    from LesaNetCore.ontology import load_default_ontology, read_label_split
    from LesaNetCore.training.dataset import canonical_label_names

    hand = shared_file("lesanet/hand_labeled_dev.json")
    onto = load_default_ontology()
    names = canonical_label_names(read_label_split(shared_file("lesanet/text_mined_labels_171_and_split.json"))
                                  .term_list, onto)
    truth = read_hand_labeled(hand, names, onto)
    raw = json.loads(hand.read_text())
    assert len(truth) == len(raw) == 250
    kept = sum(len(v) for v in truth.values())
    assert kept >= 0.8 * sum(len(r["expanded_terms"]) for r in raw)  # nearly every term is one of the 171
    assert all(labels <= set(names) for labels in truth.values())


def test_grid_verdict_needs_half_a_point():
    from LesaNetCore.pipeline.evaluate import grid_verdict

    assert grid_verdict(0.0016) == "makes no material difference"
    assert grid_verdict(0.02) == "helps" and grid_verdict(-0.02) == "hurts"


@pytest.mark.slow
def test_embed_split_runs_the_fused_copy_and_leaves_the_model_alone(trained):
    """Evaluation and index building see the Annotator's numbers: the fused inference copy, not the eval model."""
    import torch

    from LesaNetCore.model import InferenceModel
    from LesaNetCore.pipeline.evaluate import embed_split
    from LesaNetCore.training.checkpoint import build_model, load_checkpoint
    from LesaNetCore.training.dataset import PatchDataset, open_patch_cache
    from LesaNetCore.training.engine import predict

    model = build_model(load_checkpoint(trained["model"])).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cache = open_patch_cache(trained["data"] / "cache")
    probs, embeddings = embed_split(model, cache, "val", batch_size=4)
    # The Annotator's path, with the kernels embed_split chose (cached on its first batch).
    fused_probs, fused_embeddings = InferenceModel(model, kernels="cached").predict_dataset(
        PatchDataset(cache, "val"), 4, return_embeddings=True)
    np.testing.assert_array_equal(probs, fused_probs)
    np.testing.assert_array_equal(embeddings, fused_embeddings)
    plain_probs, _ = predict(model, PatchDataset(cache, "val"), 4, "cpu", return_embeddings=True)
    np.testing.assert_allclose(probs, plain_probs, atol=1e-5)
    assert not np.array_equal(probs, plain_probs)  # BN folding rounds differently: the fused copy really ran
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
