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
