"""Annotator: patch -> model -> consistent decisions -> similar lesions; lesanet annotate; the result API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_file

from LesaNetCore.annotate import Annotator
from LesaNetCore.cli import main
from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging import extract_patch
from LesaNetCore.ontology import load_default_ontology

LABELS = ["abdomen", "upper abdomen", "liver", "kidney", "right kidney", "spleen", "mass", "liver mass", "cyst",
          "kidney cyst", "hypoattenuation", "hyperattenuation", "enhancing"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small untrained lesanet_demo checkpoint with the label ontology, saved and loaded as users do."""
    torch = pytest.importorskip("torch")
    from LesaNetCore.model import create_model
    from LesaNetCore.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ontology = load_default_ontology().subset(LABELS)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, create_model("lesanet_demo", num_labels=len(LABELS)), arch="lesanet_demo",
                    label_names=LABELS, label_classes=[ontology.label_class(n) for n in LABELS],
                    ontology_digest=ontology.digest(), thresholds=[0.5] * len(LABELS),
                    label_ontology=ontology.to_dict())
    return path


@pytest.fixture(scope="module")
def volume():
    from LesaNetCore.demo import demo_volume

    return demo_volume(seed=3)


def test_annotate_is_consistent_with_the_ontology(checkpoint, volume):
    ct, lesions = volume
    annotator = Annotator(checkpoint, index=False, device="cpu")
    result = annotator.annotate(ct, box_ijk=lesions[0].box_ijk)
    onto = annotator.label_ontology
    assert [x.term for x in result.labels] == LABELS
    assert result.accepted == {x.term for x in result.labels if x.decision}
    for term in result.accepted:  # hierarchy: every accepted label brings its ancestors
        assert onto.ancestors(term) <= result.accepted
        assert not (onto.exclusive_with(term) & result.accepted)  # exclusivity
    assert result.embedding.shape == (256,)
    assert abs(float(np.linalg.norm(result.embedding)) - 1.0) < 1e-4
    assert result.location.key_slice == lesions[0].box_ijk[4]
    assert set(result.timings_ms) >= {"patch", "forward", "decide", "search", "total"}
    # The patch the model saw is the core's patch of that box.
    patch = extract_patch(ct, box_ijk=lesions[0].box_ijk)
    assert np.array_equal(result.patch_image, patch.image)
    assert result.label("liver").radlex == "RID58"


def test_annotate_many_equals_single_calls(checkpoint, volume):
    ct, lesions = volume
    annotator = Annotator(checkpoint, index=False, device="cpu")
    batch = annotator.annotate_many(ct, boxes_ijk=[x.box_ijk for x in lesions])
    for lesion, result in zip(lesions, batch, strict=True):
        single = annotator.annotate(ct, box_lps=lesion.box_lps)
        np.testing.assert_allclose([x.score for x in single.labels], [x.score for x in result.labels], atol=1e-3)


def test_threshold_offset_shifts_thresholds(checkpoint, volume):
    ct, lesions = volume
    high = Annotator(checkpoint, index=False, device="cpu", threshold_offset=0.3).annotate(ct, box_ijk=lesions[0].box_ijk)
    assert all(abs(x.threshold - 0.8) < 1e-9 for x in high.labels)


def test_index_from_another_model_is_refused(checkpoint, tmp_path):
    from LesaNetCore.retrieval import ReferenceEntry, ReferenceIndex

    index = ReferenceIndex.build(np.eye(2, 256, dtype=np.float32), [ReferenceEntry("1", "p", ()), ReferenceEntry("2", "q", ())],
                                 model_digest="0" * 64, label_names=LABELS)
    index.save(tmp_path / "index")
    with pytest.raises(LesaNetError, match="model_digest"):
        Annotator(checkpoint, tmp_path / "index", device="cpu")


def test_similar_lesions_exclude_the_patient_and_list_specific_labels_first(checkpoint, volume):
    from LesaNetCore.retrieval import ReferenceEntry, ReferenceIndex
    from LesaNetCore.training.checkpoint import checkpoint_digest, load_checkpoint

    ct, lesions = volume
    plain = Annotator(checkpoint, index=False, device="cpu")
    query = plain.annotate(ct, box_ijk=lesions[0].box_ijk).embedding
    rng = np.random.default_rng(0)
    vectors = query[None] + 0.05 * rng.standard_normal((6, 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    entries = [ReferenceEntry(str(i), "self" if i < 3 else f"p{i}", ("abdomen", "liver", "liver mass")) for i in range(6)]
    index = ReferenceIndex.build(vectors, entries, model_digest=checkpoint_digest(load_checkpoint(checkpoint)),
                                 label_names=LABELS)
    result = Annotator(checkpoint, index, device="cpu", top_k=3).annotate(ct, box_ijk=lesions[0].box_ijk,
                                                                         exclude_patient="self")
    assert [s.patient_id for s in result.similar] and all(s.patient_id != "self" for s in result.similar)
    assert result.similar[0].labels[0] == "liver mass"


def test_missing_model_and_bad_options_are_named(checkpoint):
    with pytest.raises(LesaNetError, match="model: must be an existing checkpoint file"):
        Annotator("no/such/model.pt", index=False)
    with pytest.raises(LesaNetError, match="threshold_offset"):
        Annotator(checkpoint, index=False, threshold_offset=1.5)
    with pytest.raises(LesaNetError, match="device"):
        Annotator(checkpoint, index=False, device="tpu")


def test_box_outside_the_volume_is_named(checkpoint, volume):
    ct, _ = volume
    with pytest.raises(LesaNetError, match="box_ijk"):
        Annotator(checkpoint, index=False).annotate(ct, box_ijk=(10, 10, 20, 20, 10_000))


def test_top_finding_is_specific():
    from LesaNetCore.result import AnnotationResult, LabelScore, LesionLocation

    def label(term, cls, parents=()):
        return LabelScore(term, cls, 0.9, 0.5, True, None, tuple(parents))

    labels = (label("abdomen", "bodypart"), label("kidney", "bodypart", ["abdomen"]),
              label("right kidney", "bodypart", ["kidney"]), label("mass", "type"),
              label("kidney mass", "type", ["mass", "kidney"]), label("liver", "bodypart", ["abdomen"]),
              label("cyst", "type"))
    location = LesionLocation(0, (0, 0, 1, 1), (0, 0, 0))
    result = AnnotationResult(labels, frozenset(["abdomen", "kidney", "right kidney", "mass", "kidney mass"]),
                              location, np.zeros(256, np.float32))
    assert result.top_finding() == "right kidney mass"
    assert result.with_edits(accept=["liver", "cyst"], reject=["right kidney", "kidney", "kidney mass", "mass"]) \
        .top_finding() == "liver cyst"


@pytest.mark.slow
def test_cli_annotate_real_ct_writes_all_reports(checkpoint, tmp_path, capsys):
    """lesanet annotate on the real CT with a box around the liver from its organ label map."""
    sitk = pytest.importorskip("SimpleITK")
    ct_path = shared_file("ct/abdomen_pelvis_ct.nii.gz")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_file("ct/abdomen_pelvis_seg_v1.nii.gz"))))
    labels = json.loads(shared_file("ct/label_maps_total_v1_v2.json").read_text())["v1_commit_5de6e4d"]
    liver = next(int(k) for k, v in labels.items() if v == "liver")
    k = int(np.argmax((seg == liver).sum(axis=(1, 2))))
    rows, cols = np.nonzero(seg[k] == liver)
    box = f"{cols.min()},{rows.min()},{cols.max()},{rows.max()},{k}"
    out = {s: tmp_path / f"r.{s}" for s in ("json", "md")}
    sr = tmp_path / "r.dcm"
    code = main(["annotate", str(ct_path), "--box-ijk", box, "--model", str(checkpoint), "--sr", str(sr),
                 "--json", str(out["json"]), "--md", str(out["md"])])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Body part:" in printed and "wrote" in printed
    from LesaNetCore.report import read_dicom_sr, read_json_report

    result = read_json_report(out["json"])[0]
    groups = read_dicom_sr(sr)
    assert len(groups) == 1
    assert set(groups[0]["labels"]) == set(result.accepted)  # the SR carries exactly the accepted labels
    assert main(["annotate", str(ct_path), "--box-ijk", box, "--model", str(checkpoint), "--json",
                 str(out["json"])]) == 2  # refuses to overwrite


def test_cli_annotate_dicom_series_sr_is_valid_and_reads_back(checkpoint, tmp_path, capsys):
    """DICOM series folder in, SR out: dciodvfy finds no error; highdicom and dcmqi read the labels and box back."""
    import subprocess

    from test_report_sr import _dciodvfy_errors, _tool, write_ct_series

    from LesaNetCore.report import read_dicom_sr, read_json_report

    folder = tmp_path / "series"
    folder.mkdir()
    write_ct_series(folder)
    sr, report = tmp_path / "lesion.dcm", tmp_path / "lesion.json"
    # A low threshold makes the untrained model accept labels, so the SR has evaluations to compare.
    assert main(["annotate", str(folder), "--box-ijk", "3,4,9,11,2", "--model", str(checkpoint), "--sr", str(sr),
                 "--json", str(report), "--threshold-offset=-0.45"]) == 0
    capsys.readouterr()
    assert _dciodvfy_errors(sr) == []
    result = read_json_report(report)[0]
    assert result.accepted
    group = read_dicom_sr(sr)[0]
    assert set(group["labels"]) == set(result.accepted)
    assert group["coordinates"] == "image" and group["source_image_uid"]
    columns, rows = np.asarray(group["graphic_data"]).T
    # Inclusive pixels 3..9 x 4..11 span the image coordinates 3..10 x 4..12 (pixel corners).
    assert (columns.min(), columns.max(), rows.min(), rows.max()) == (3.0, 10.0, 4.0, 12.0)
    tool = _tool("tid1500reader")
    if tool is None:
        pytest.skip("tid1500reader not installed (pip install dcmqi)")
    subprocess.run([tool, "--inputDICOM", str(sr), "--outputMetadata", str(tmp_path / "m.json")], check=True,
                   capture_output=True, timeout=60)
    groups = json.loads((tmp_path / "m.json").read_text())["Measurements"]
    coded = {q["conceptValue"]["CodeMeaning"] for q in groups[0]["qualitativeEvaluations"]
             if isinstance(q["conceptValue"], dict)}
    assert coded == set(result.accepted)
