"""A reader's corrections as training data, and fine-tuning the demo model on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def demo_results():
    """The demo model's results on phantom lesions of several patients, with their true labels."""
    from LesaNetCore.annotate import Annotator
    from LesaNetCore.imaging import Volume
    from LesaNetCore.phantom import make_phantom_volume

    annotator = Annotator(device="cpu", index=False)
    out = []
    for patient in range(8):
        voxels, spacing, origin, direction, lesions = make_phantom_volume(seed=300 + patient, n_lesions=4, size=128,
                                                                          interval=5.0)
        volume = Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3))
        for n, result in enumerate(annotator.annotate_many(volume, boxes_ijk=[x.box_ijk for x in lesions])):
            out.append((f"p{patient}", f"p{patient}-{n}", result, lesions[n].spec))
    return out


def test_corrections_become_a_patch_cache_with_the_readers_labels(demo_results, tmp_path):
    from LesaNetCore.review import read_corrections, write_correction
    from LesaNetCore.training import open_patch_cache

    folder = tmp_path / "corrections"
    patient, lesion_id, result, _ = demo_results[0]
    removed = result.most_specific(sorted(result.accepted))[0]  # a leaf: no kept child brings it back
    added = next(x.term for x in result.labels if x.term not in result.accepted and not x.parents)
    corrected = result.with_edits(accept=[added], reject=[removed]).reviewed("corrected", "Doe^Jane")
    assert write_correction(folder, corrected, lesion_id, patient) is not None
    for other_patient, other_id, other, _ in demo_results[1:6]:
        write_correction(folder, other.reviewed("accepted", "Doe^Jane"), other_id, other_patient)
    cache = open_patch_cache(folder)  # what `lesanet train --data CORRECTIONS` opens
    names = cache.label_names
    assert names == [x.term for x in result.labels] and len(cache.arrays["split"]) == 6
    row = cache.meta["corrections"]["lesion_ids"].index(lesion_id)
    targets, reliable = np.asarray(cache.arrays["targets"][row]), np.asarray(cache.arrays["reliable"][row])
    assert targets[names.index(added)] == 1 and targets[names.index(removed)] == 0
    assert reliable[names.index(removed)] and reliable[names.index(added)]
    kept = [t for t in corrected.accepted if t != added]
    assert all(targets[names.index(t)] == 1 for t in kept)
    assert set(np.asarray(cache.arrays["split"]).tolist()) == {0, 1}  # a held-out part for the thresholds
    np.testing.assert_array_equal(cache.arrays["images"][row], np.clip(np.rint(result.patch_image), 0, 255))
    summary = json.loads((folder / "corrections.json").read_text())
    assert summary["lesions"] == 6 and summary["readers"] == ["Doe^Jane"] and summary["statuses"]["corrected"] == 1
    # Skipping a lesion later takes it out of the training data.
    write_correction(folder, corrected.reviewed("skipped"), demo_results[0][1], demo_results[0][0])
    assert len(read_corrections(folder)) == 5 and len(open_patch_cache(folder).arrays["split"]) == 5
    # So does a skip without a result at hand (the Slicer review skipping a lesion before its annotation).
    from LesaNetCore.review import remove_correction
    from LesaNetCore.review.corrections import correction_file

    report = correction_file(folder, demo_results[1][1])
    assert report.is_file() and report.with_suffix(".npz").is_file()
    assert remove_correction(folder, demo_results[1][1])
    assert len(read_corrections(folder)) == 4 and len(open_patch_cache(folder).arrays["split"]) == 4
    assert not report.exists() and not report.with_suffix(".npz").exists()  # report and training row both gone
    assert not remove_correction(folder, demo_results[1][1])


@pytest.mark.slow
def test_finetune_records_its_parent_and_compares_on_the_held_out_part(demo_results, tmp_path):
    from LesaNetCore.annotate import demo_model_path
    from LesaNetCore.cli import main
    from LesaNetCore.review import write_correction
    from LesaNetCore.training import load_checkpoint
    from LesaNetCore.training.checkpoint import checkpoint_digest

    folder = tmp_path / "corrections"
    for patient, lesion_id, result, _ in demo_results:
        write_correction(folder, result.reviewed("accepted", "Doe^Jane"), lesion_id, patient)
    run = tmp_path / "run"
    assert main(["finetune", "--model", str(demo_model_path()), "--corrections", str(folder), "--out", str(run),
                 "--epochs", "2", "--data", str(folder), "--mix-ratio", "0.5"]) == 0
    child = load_checkpoint(run / "best.pt")
    provenance = child.metrics["finetune"]
    assert provenance["parent_digest"] == checkpoint_digest(load_checkpoint(demo_model_path()))
    assert provenance["lesions"] > len(demo_results) * 0.8 and provenance["held_out"] >= 1
    assert provenance["mixed"]["lesions"] > 0 and provenance["readers"] == ["Doe^Jane"]
    assert child.label_ontology is not None and len(child.thresholds) == len(child.label_names)
    comparison = json.loads((run / "comparison.json").read_text())
    assert set(comparison) >= {"parent", "child", "labels"} and comparison["lesions"] == provenance["held_out"]
    assert main(["finetune", "--model", str(demo_model_path()), "--corrections", str(folder), "--out",
                 str(run)]) != 0  # the folder holds a run: refused, nothing overwritten
    # lesanet evaluate compares the child with the parent it records, on the same held-out corrections.
    report_dir = tmp_path / "report"
    assert main(["evaluate", "--model", str(run / "best.pt"), "--corrections", str(folder), "--out",
                 str(report_dir)]) == 0
    report = json.loads((report_dir / "comparison.json").read_text())
    assert report["parent"] == comparison["parent"] and report["child"] == comparison["child"]
    assert report["models"]["parent"]["digest"] == provenance["parent_digest"]
    assert (report_dir / "comparison.png").stat().st_size > 1000
    assert "| parent |" in (report_dir / "comparison.md").read_text()
    assert main(["evaluate", "--model", str(run / "best.pt"), "--corrections", str(folder), "--out",
                 str(report_dir)]) != 0  # a comparison is there: not overwritten
    assert main(["evaluate", "--model", str(demo_model_path()), "--corrections", str(folder), "--out",
                 str(tmp_path / "r2")]) != 0  # the demo model records no parent: --parent is required


def test_reviewed_lesions_join_a_reference_index_without_rebuilding(demo_results, tmp_path):
    import shutil

    from LesaNetCore.annotate import demo_index_path, demo_model_path
    from LesaNetCore.cli import main
    from LesaNetCore.retrieval import ReferenceIndex
    from LesaNetCore.review import write_correction

    folder = tmp_path / "corrections"
    chosen = demo_results[:6]
    for patient, lesion_id, result, _ in chosen:
        write_correction(folder, result.reviewed("accepted", "Doe^Jane"), lesion_id, patient)
    index_dir = tmp_path / "index"
    shutil.copytree(demo_index_path(), index_dir)
    before = ReferenceIndex.load(index_dir)
    args = ["index", "add", "--index", str(index_dir), "--model", str(demo_model_path()), "--corrections",
            str(folder), "--quiet"]
    assert main(args) == 0
    grown = ReferenceIndex.load(index_dir)
    assert len(grown) == len(before) + len(chosen)
    np.testing.assert_array_equal(grown.embeddings[:len(before)], before.embeddings)  # old rows untouched
    for patient, lesion_id, result, _ in chosen:
        # Embedded by the index's model: the lesion's own embedding (from the Annotator) finds it first.
        nearest = grown.search(result.embedding, k=1)[0]
        assert nearest.lesion_id == lesion_id and nearest.distance < 0.02
        assert nearest.patient_id == patient and set(nearest.labels) >= set(result.accepted)
        assert "Doe Jane" in nearest.sentence and nearest.thumbnail is not None
        assert all(hit.lesion_id != lesion_id for hit in grown.search(result.embedding, k=5, exclude_patient=patient))
    assert main(args) == 0 and len(ReferenceIndex.load(index_dir)) == len(grown)  # again: nothing twice
    # The reader changes one lesion's labels: its entry is updated in place of a second one.
    patient, lesion_id, result, _ = chosen[0]
    removed = result.most_specific(sorted(result.accepted))[0]
    write_correction(folder, result.with_edits(reject=[removed]).reviewed("corrected", "Doe^Jane"), lesion_id, patient)
    assert main(args) == 0
    updated = ReferenceIndex.load(index_dir)
    rows = [r for r in range(len(updated)) if updated.entry(r).lesion_id == lesion_id]
    assert len(updated) == len(grown) and len(rows) == 1 and removed not in updated.entry(rows[0]).labels
    again = updated.search(result.embedding, k=1)[0]  # only this lesion was embedded, and into its own row
    assert again.lesion_id == lesion_id and again.distance < 0.02
    # A new folder that exists, or a model other than the index's, is refused and changes nothing.
    assert main([*args, "--out", str(index_dir)]) != 0
    other = tmp_path / "other.pt"
    from LesaNetCore.training import load_checkpoint
    from LesaNetCore.training.checkpoint import build_model, save_checkpoint

    parent = load_checkpoint(demo_model_path())
    model = build_model(parent, device="cpu")
    for parameter in model.parameters():
        parameter.data.mul_(0.5)
    save_checkpoint(other, model, arch=parent.arch, label_names=parent.label_names, label_classes=parent.label_classes,
                    ontology_digest=parent.ontology_digest, preprocessing=parent.preprocessing,
                    thresholds=parent.thresholds, label_ontology=parent.label_ontology)
    assert main(["index", "add", "--index", str(index_dir), "--model", str(other), "--corrections", str(folder)]) != 0
    assert len(ReferenceIndex.load(index_dir)) == len(updated)


def test_extending_a_faiss_index_keeps_its_lists_and_refuses_replacing(tmp_path):
    pytest.importorskip("faiss")
    from LesaNetCore.errors import LesaNetError
    from LesaNetCore.retrieval import ReferenceEntry, ReferenceIndex
    from LesaNetCore.retrieval.extend import extended_index

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    entries = [ReferenceEntry(f"L{i}", f"P{i}", ("liver",)) for i in range(600)]
    index = ReferenceIndex.build(vectors[:500], entries[:500], model_digest="m", label_names=["liver"], method="ivf",
                                 params={"nlist": 8, "nprobe": 8})
    grown = extended_index(index, vectors[500:], entries[500:], model_digest="m")
    assert len(grown) == 600 and len(index) == 500 and grown.method == "ivf" and grown.params["nlist"] == 8
    hits = grown.search_rows(vectors[500:510], k=1)[0]
    assert hits[:, 0].tolist() == list(range(500, 510))  # each new vector finds itself (nprobe covers all lists)
    grown.save(tmp_path / "ivf")
    assert len(ReferenceIndex.load(tmp_path / "ivf")) == 600
    with pytest.raises(LesaNetError, match="rebuild"):
        extended_index(grown, vectors[:1], entries[:1], model_digest="m", replace=True)
    with pytest.raises(LesaNetError, match="not yet in the index"):
        extended_index(grown, vectors[:1], entries[:1], model_digest="m")
    with pytest.raises(LesaNetError, match="--model"):
        extended_index(grown, vectors[:1], [ReferenceEntry("new", "P", ())], model_digest="other")
