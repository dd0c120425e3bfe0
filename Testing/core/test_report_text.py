"""JSON (lossless round trip, documented schema) and Markdown (readable content) reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.report import markdown_report, read_json_report, write_json_report, write_markdown_report
from LesaNetCore.report.markdown import score_bar
from LesaNetCore.result import AnnotationResult, LabelScore, LesionLocation, SimilarLesion

DISCLAIMER = "Demo model trained on phantoms; not for clinical use."


def make_result(seed: int = 0) -> AnnotationResult:
    rng = np.random.default_rng(seed)
    labels = (
        LabelScore("liver", "bodypart", 0.9312345678901234, 0.5, True, "RID58"),
        LabelScore("mass", "type", 0.81, 0.4, True, "RID3874"),
        LabelScore("hypodense", "attribute", 0.7, 0.6, True, "RID6042"),
        LabelScore("liver mass", "type", 0.3, 0.5, False, None),
        LabelScore("lung", "bodypart", 0.05, 0.5, False, "RID1301"),
    )
    embedding = rng.normal(size=256).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    similar = (
        SimilarLesion("17", "3", 0.4123, ("liver", "mass"), "Hypodense liver mass | segment 7.",
                      rng.integers(0, 256, (8, 6), dtype=np.uint8)),
        SimilarLesion("250", "41", 0.77, ("lung",), "", None),
    )
    return AnnotationResult(
        labels=labels,
        accepted=frozenset({"liver", "mass", "hypodense"}),
        location=LesionLocation(12, (30.0, 40.0, 52.0, 61.0), (1.5, -2.25, 100.0), (1.5, 2.0, 30.0, 40.0, 100.0),
                                "/dicom/IM12.dcm"),
        embedding=embedding,
        similar=similar,
        patch_image=rng.integers(0, 256, (3, 12, 12), dtype=np.uint8),
        patch_box=(40.5, 41.0, 79.5, 80.0),
        timings_ms={"patch": 3.25, "forward": 41.0, "total": 45.125},
        model="lesanet_demo sha256:0123abcd",
        volume_source="/data/ct.nii.gz",
    )


def assert_same(a: AnnotationResult, b: AnnotationResult) -> None:
    assert a.labels == b.labels and a.accepted == b.accepted and a.added == b.added
    assert a.location == b.location and a.patch_box == b.patch_box and a.timings_ms == b.timings_ms
    assert a.model == b.model and a.volume_source == b.volume_source
    assert a.embedding.dtype == b.embedding.dtype and np.array_equal(a.embedding, b.embedding)
    assert (a.patch_image is None) == (b.patch_image is None)
    if a.patch_image is not None:
        assert a.patch_image.dtype == b.patch_image.dtype and np.array_equal(a.patch_image, b.patch_image)
    assert len(a.similar) == len(b.similar)
    for x, y in zip(a.similar, b.similar, strict=True):
        assert (x.lesion_id, x.patient_id, x.distance, x.labels, x.sentence) == (
            y.lesion_id, y.patient_id, y.distance, y.labels, y.sentence)
        assert (x.thumbnail is None and y.thumbnail is None) or np.array_equal(x.thumbnail, y.thumbnail)


def test_json_round_trip_is_exact(tmp_path):
    results = [make_result(0), make_result(1).with_edits(accept=["liver mass"], reject=["hypodense"])]
    path = write_json_report(results, tmp_path / "r.json")
    back = read_json_report(path)
    assert len(back) == 2
    for a, b in zip(results, back, strict=True):
        assert_same(a, b)
    assert back[1].edited and back[1].added == frozenset({"liver mass"})
    data = json.loads(path.read_text())
    assert data["format"] == "lesanet-annotation-report" and data["version"] == 1
    lesion = data["lesions"][1]
    assert lesion["edited"] is True and lesion["top_finding"] == "liver mass"
    label = next(x for x in lesion["labels"] if x["term"] == "hypodense")
    assert label == {"term": "hypodense", "class": "attribute", "score": 0.7, "threshold": 0.6,
                     "decision": True, "accepted": False, "radlex": "RID6042", "parents": []}


def test_json_without_images_is_small_and_reads_back(tmp_path):
    path = write_json_report([make_result()], tmp_path / "r.json", include_images=False)
    back = read_json_report(path)[0]
    assert back.patch_image is None and back.similar[0].thumbnail is None
    assert back.labels == make_result().labels
    assert path.stat().st_size < write_json_report([make_result()], tmp_path / "big.json").stat().st_size


def test_json_bad_input_names_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other", "version": 1, "lesions": []}))
    with pytest.raises(LesaNetError, match="format: must be 'lesanet-annotation-report', but got 'other'"):
        read_json_report(bad)
    bad.write_text(json.dumps({"format": "lesanet-annotation-report", "version": 9, "lesions": []}))
    with pytest.raises(LesaNetError, match="version: must be 1"):
        read_json_report(bad)
    data = json.loads(write_json_report([make_result()], tmp_path / "ok.json").read_text())
    data["lesions"][0]["accepted"].append("kidney")
    bad.write_text(json.dumps(data))
    with pytest.raises(LesaNetError, match=r"lesions\[0\]\.accepted: must only hold terms .*'kidney'"):
        read_json_report(bad)
    bad.write_text("{not json")
    with pytest.raises(LesaNetError, match="json path: must be a readable JSON file"):
        read_json_report(bad)


def test_reports_refuse_to_overwrite(tmp_path):
    for writer, name in ((write_json_report, "r.json"), (write_markdown_report, "r.md")):
        target = tmp_path / name
        target.write_text("keep")
        with pytest.raises(LesaNetError, match="refusing to overwrite"):
            writer([make_result()], target)
        assert target.read_text() == "keep"
        writer([make_result()], target, overwrite=True)
        assert target.read_text() != "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]


def test_score_bar():
    assert score_bar(0.0) == "░" * 10 and score_bar(1.0) == "█" * 10
    assert score_bar(0.74) == "███████░░░" and score_bar(1.7) == "█" * 10 and score_bar(-1) == "░" * 10


def test_markdown_content(tmp_path):
    edited = make_result(1).with_edits(accept=["liver mass"], reject=["hypodense"])
    path = write_markdown_report([make_result(), edited], tmp_path / "r.md", disclaimer=DISCLAIMER)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# LesaNet lesion annotation report\n")
    assert f"> **{DISCLAIMER}**" in text
    first, second = text.split("## Lesion 2")
    assert "## Lesion 1: liver mass" in first
    assert "| Body part | liver | RID58 | 0.93 | `█████████░` | 0.50 |  |" in first
    assert "| Attribute | hypodense | RID6042 | 0.70 | `███████░░░` | 0.60 |  |" in first
    assert "lung" not in first.split("### Similar")[0]  # rejected by the model, not listed as accepted
    assert "Label set edited" not in first
    assert "**Label set edited by the user** — added: liver mass; removed: hypodense" in second
    assert "| Type | liver mass |  | 0.30 | `███░░░░░░░` | 0.50 | added by user |" in second
    assert "Rejected by the user: hypodense" in second
    assert "| Attribute | hypodense" not in second
    assert "| 1 | 17 | 3 | 0.412 | liver, mass | Hypodense liver mass \\| segment 7. |" in first
    assert "Timings: patch 3.2 ms, forward 41.0 ms, total 45.1 ms" in first
    assert "Key slice 12, box (30, 40)–(52, 61) voxels" in first


def test_markdown_limits_similar_and_rejects_bad_input():
    text = markdown_report([make_result()], max_similar=1)
    assert "| 1 | 17 |" in text and "| 2 | 250 |" not in text
    assert "Similar reference lesions" not in markdown_report([make_result()], max_similar=0)
    with pytest.raises(LesaNetError, match="max_similar: must be >= 0, but got -1"):
        markdown_report([make_result()], max_similar=-1)
    with pytest.raises(LesaNetError, match=r"results\[0\]: must be an AnnotationResult, but got 'dict'"):
        markdown_report([{}])
