"""Reviewing a worklist in the module on Slicer's real Python layer, then fine-tuning on the reader's corrections.

A scripted reader walks a phantom worklist in the panel (the Accept shortcut, the panel's label checkboxes and
Add). The reader follows a convention the demo model cannot know, chosen by the test: every kidney lesion is
also "calcified", no other lesion is; all other labels are accepted as proposed. The demo model therefore gets
"calcified" wrong by design (F1 0 on these phantoms). The corrections folder then fine-tunes the demo model, and
on held-out phantom lesions read with the same convention the F1 of "calcified" improves, while the child keeps
the parent's other decisions.
"""

from __future__ import annotations

import csv
import json
import os
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import slicerlayer  # noqa: E402

MODULE_FILE = slicerlayer.REPO_ROOT / "LesaNetSlicer" / "LesaNetSlicer.py"
VERSION = slicerlayer.VERSIONS[-1]
pytestmark = pytest.mark.slow


def _phantom_lesions(seeds, per_volume=5):
    """(volume, [(lesion, true labels as most specific terms)]) of phantom CTs."""
    from LesaNetCore.imaging import Volume
    from LesaNetCore.phantom import make_phantom_volume

    out = []
    for seed in seeds:
        voxels, spacing, origin, direction, lesions = make_phantom_volume(seed=seed, n_lesions=per_volume, size=128,
                                                                          interval=5.0)
        out.append((Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3)), lesions))
    return out


def _f1(decisions: np.ndarray, truth: np.ndarray) -> float:
    tp = int((decisions & truth).sum())
    return 2 * tp / max(1, int(decisions.sum()) + int(truth.sum()))


@pytest.fixture(scope="module")
def layer():
    reason = slicerlayer.unavailable(VERSION)
    if reason:
        pytest.skip(reason)
    pytest.importorskip("torch")
    loaded = slicerlayer.SlicerLayer.load(VERSION)
    loaded.loadModule(MODULE_FILE)
    yield loaded
    loaded.unload()


def _wait(layer, widget, timeout=120.0):
    deadline = time.perf_counter() + timeout
    while widget.controller.busy:
        layer.processEvents(0.002)
        assert time.perf_counter() < deadline
    layer.processEvents(0.01)


CONVENTION_LABEL = "calcified"
CONVENTION_SITES = ("right kidney", "left kidney")


def test_scripted_review_then_finetune_learns_the_readers_convention(layer, tmp_path, capsys):
    import SimpleITK as sitk

    from LesaNetCore.annotate import Annotator, demo_model_path
    from LesaNetCore.review.finetune import finetune
    from LesaNetCore.training import load_checkpoint

    widget = layer.widget("LesaNetSlicer")
    errors = []
    widget.controller.errorHandler = lambda message, details: errors.append((message, details))
    widget._parameterNode.device = "cpu"
    parent = Annotator(device="cpu", index=False)
    names = list(parent.label_names)
    assert CONVENTION_LABEL in names
    wanted = {}  # lesion id -> whether the reader says "calcified"

    reviewed = _phantom_lesions(range(500, 516))
    held_out = _phantom_lesions(range(700, 712))
    rows = []
    for n, (volume, lesions) in enumerate(reviewed):
        sitk.WriteImage(volume.to_sitk(), str(tmp_path / f"ct{n}.nii.gz"))
        for m, lesion in enumerate(lesions):
            lesion_id = f"p{n}-{m}"
            rows.append({"volume": f"ct{n}.nii.gz", "box_ijk": ",".join(f"{v:g}" for v in lesion.box_ijk),
                         "lesion_id": lesion_id, "patient_id": f"p{n}"})
            wanted[lesion_id] = lesion.spec.bodypart in CONVENTION_SITES
    worklist = tmp_path / "list.csv"
    with worklist.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def decisions(annotator, sets):
        said, truth, others = [], [], []
        for volume, lesions in sets:
            for lesion, result in zip(lesions, annotator.annotate_many(volume, boxes_ijk=[x.box_ijk for x in lesions]),
                                      strict=True):
                said.append(CONVENTION_LABEL in result.accepted)
                truth.append(lesion.spec.bodypart in CONVENTION_SITES)
                others.append([t in result.accepted for t in names if t != CONVENTION_LABEL])
        return np.array(said), np.array(truth), np.array(others)

    parent_said, held_truth, parent_others = decisions(parent, held_out)
    assert held_truth.sum() >= 5 and sum(wanted.values()) >= 5

    # The scripted reader, through the panel.
    corrections = tmp_path / "corrections"
    widget.ui.correctionsPathLineEdit.currentPath = str(corrections)
    widget.ui.readerLineEdit.text = "Doe^Jane"
    assert widget._parameterNode.reader == "Doe^Jane"
    widget.review.loadWorklist(str(worklist))
    session = widget.review.session
    assert session.count == len(rows)
    seen = 0
    while widget.review.currentRow() is not None and \
            session.value(widget.review.currentRow(), "status") == "unreviewed":
        _wait(layer, widget)
        assert not errors, errors
        row = widget.review.currentRow()
        lesion_id = session.value(row, "lesion_id")
        assert widget.panel.result is not None and widget.logic.resultFor(session.lesionNode(row)) is not None
        has = CONVENTION_LABEL in widget.panel.accepted()
        if wanted[lesion_id] and not has:
            combo = widget.panel.addComboBox
            combo.setCurrentIndex(combo.findText(CONVENTION_LABEL))
            widget.panel.addButton.click()
        elif has and not wanted[lesion_id]:
            widget.panel.checkBox(CONVENTION_LABEL).setChecked(False)
        assert (CONVENTION_LABEL in widget.panel.accepted()) == wanted[lesion_id]
        widget.review.shortcuts["accept"].activated.emit()  # Ctrl+Shift+Return
        seen += 1
    _wait(layer, widget)
    assert seen == len(rows) and not errors, errors
    counts = session.counts()
    assert counts["unreviewed"] == 0 and counts["corrected"] + counts["accepted"] == len(rows)
    assert counts["corrected"] >= sum(wanted.values())
    assert f"{len(rows)} of {len(rows)} reviewed" in widget.ui.reviewProgressLabel.text
    summary = json.loads((corrections / "corrections.json").read_text())
    assert summary["lesions"] == len(rows) and summary["readers"] == ["Doe^Jane"]
    export = widget.review.exportReview(str(tmp_path / "review"))
    agreement = {r["term"]: r for r in csv.DictReader((export / "agreement.csv").open())}
    assert int(agreement[CONVENTION_LABEL]["fn"]) == sum(wanted.values())  # the model missed every one

    # Fine-tuning on the corrections: the reader's convention is learnt, the other decisions kept.
    run = finetune(demo_model_path(), corrections, tmp_path / "run", epochs=6, progress=False)
    child = Annotator(load_checkpoint(run["checkpoint"]), index=False, device="cpu")
    child_said, _, child_others = decisions(child, held_out)
    before, after = _f1(parent_said, held_truth), _f1(child_said, held_truth)
    kept = float((child_others == parent_others).mean())
    with capsys.disabled():
        print(f"\n[review + finetune] {CONVENTION_LABEL!r} by the reader's convention: F1 on {len(held_truth)} "
              f"held-out phantom lesions {before:.3f} -> {after:.3f}; the child keeps {kept:.1%} of the parent's "
              f"other decisions; {counts['corrected']} corrected, {counts['accepted']} accepted of {len(rows)}")
    assert after > before and after >= 0.4
    assert kept >= 0.9
    widget.logic.shutdown()


def test_a_saved_sr_continues_the_review(layer, tmp_path):
    """An SR written after a review comes back: lesions on the CT, the reader's labels and verdicts applied."""
    widget = layer.widget("LesaNetSlicer")
    errors = []
    widget.controller.errorHandler = lambda message, details: errors.append((message, details))
    slicer = layer.slicer
    slicer.mrmlScene.Clear(0)
    (volume, lesions), = _phantom_lesions([900], per_volume=3)
    node = slicer.util.addVolumeFromArray(volume.voxels.astype(np.int16), ijkToRAS=volume.ijk_to_ras_matrix(),
                                          name="SrCT")
    widget._parameterNode.inputVolume = node
    widget._parameterNode.device = "cpu"
    from LesaNetCore.annotate import Annotator
    from LesaNetCore.report import write_dicom_sr

    annotator = Annotator(device="cpu", index=False)
    results = annotator.annotate_many(volume, boxes_ijk=[x.box_ijk for x in lesions])
    edited = results[0].with_edits(reject=[results[0].most_specific(sorted(results[0].accepted))[0]])
    reviewed = [edited.reviewed("corrected", "Doe^Jane"), results[1].reviewed("accepted", "Doe^Jane"), results[2]]
    sr = write_dicom_sr(reviewed, tmp_path / "review.dcm", volume=volume)

    widget.review.loadSr(str(sr))
    session = widget.review.session
    assert session.count == 3
    for row in range(3):
        widget.review.goto(row)
        _wait(layer, widget)
        result = widget.logic.resultFor(session.lesionNode(row))
        assert result.accepted == reviewed[row].accepted, row
        np.testing.assert_allclose(result.location.box_ijk, reviewed[row].location.box_ijk, atol=1e-3)
    assert [session.value(r, "status") for r in range(3)] == ["corrected", "accepted", "unreviewed"]
    assert not errors, errors
    # The gallery's full-size view (the demo index is not loaded here: a reference lesion made for the view).
    from LesaNetCore.result import SimilarLesion

    thumb = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    dialog = widget.panel.openSimilar(SimilarLesion("7", "p7", 0.2, ("liver", "mass"), "A liver mass.", thumb))
    import qt

    texts = [w.text for w in dialog.findChildren(qt.QLabel)]
    assert any("A liver mass." in t for t in texts) and any("Reference lesion 7" in t for t in texts)
    pixmaps = [w.pixmap for w in dialog.findChildren(qt.QLabel)]  # PythonQt: the property
    pixmaps = [p for p in pixmaps if p is not None and not p.isNull()]
    assert len(pixmaps) == 2 and pixmaps[1].width() == 360
    dialog.close()
    widget.logic.shutdown()


def test_an_sr_in_image_coordinates_of_a_dicom_series_reads_back_on_its_node(layer, tmp_path, monkeypatch):
    """An SR on a DICOM series names its regions in the source images' pixels: the review finds those images
    through Slicer's DICOM database (the node's DICOM.instanceUIDs) and puts the boxes back where they were."""
    import importlib.util

    import pydicom

    spec = importlib.util.spec_from_file_location("dicom_corpus", slicerlayer.REPO_ROOT / "Testing" / "core"
                                                  / "dicom_corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    from LesaNetCore.annotate import Annotator
    from LesaNetCore.imaging import read_volume
    from LesaNetCore.report import read_dicom_sr, write_dicom_sr

    (phantom, lesions), = _phantom_lesions([901], per_volume=2)
    files = corpus.write_series(tmp_path / "series", phantom.voxels, (-150.0, -160.0, -40.0), 5.0)
    volume = read_volume(tmp_path / "series")
    results = Annotator(device="cpu", index=False).annotate_many(volume, boxes_ijk=[x.box_ijk for x in lesions])
    sr = write_dicom_sr(results, tmp_path / "series.dcm", volume=volume)
    assert all(group["source_image_uid"] for group in read_dicom_sr(sr))  # image coordinates, not 3D

    slicer = layer.slicer
    slicer.mrmlScene.Clear(0)
    node = slicer.util.addVolumeFromArray(volume.voxels.astype(np.int16), ijkToRAS=volume.ijk_to_ras_matrix(),
                                          name="DicomCT")
    by_uid = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): str(f) for f in files}
    node.SetAttribute("DICOM.instanceUIDs", " ".join(reversed(list(by_uid))))  # Slicer keeps no order

    class Database:
        def fileForInstance(self, uid):
            return by_uid.get(uid, "")

    monkeypatch.setattr(slicer, "dicomDatabase", Database(), raising=False)
    from LesaNetSlicerLib import review

    items, read = review.itemsFromSr(str(sr), node)
    assert len(items) == len(read) == 2
    for lesion, result in zip(read, results, strict=True):
        np.testing.assert_allclose(lesion.box_ijk, result.location.box_ijk, atol=1e-3)
